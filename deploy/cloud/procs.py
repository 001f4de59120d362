"""Daemons started, found and stopped by PID, without systemd.

Each daemon runs in a session of its own (``setsid``), its PID in
``/run/kvmx-cloud/pids/<name>.pid`` and its output in
``/var/log/kvmx-cloud/<name>.log``. Stopping a daemon stops its whole
session: the privsep helpers and root-wrapped children a service starts
keep its session and would outlive it.
"""

import hashlib
import os
import pwd
import signal
import socket
import subprocess
import time

from cloud import layout

STOP_TIMEOUT = 30


class DeployError(Exception):
    """A step of the deployment failed: which service, and its log."""

    def __init__(self, service, problem, log=None):
        tail = log_tail(log) if log else ''
        super().__init__('%s: %s%s' % (
            service, problem,
            ('\n--- last lines of %s ---\n%s' % (log, tail)) if tail else ''))
        self.service = service


def log_tail(path, lines=25):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return '\n'.join(f.read().decode('utf-8', 'replace')
                             .splitlines()[-lines:])
    except OSError:
        return ''


def say(text):
    print('== %s' % text, flush=True)


def run(argv, check=True, env=None, input=None, timeout=600, quiet=False):
    """Run a command to completion; its output (stdout and stderr)."""
    result = subprocess.run(argv, env=_env(env), input=input, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=timeout)
    if check and result.returncode:
        raise DeployError(os.path.basename(argv[0]), '%s exited %d:\n%s' % (
            ' '.join(argv), result.returncode, result.stdout[-4000:]))
    if not quiet and result.stdout.strip() and os.environ.get('KVMX_DEBUG'):
        print(result.stdout, flush=True)
    return result.stdout


def succeeds(argv, timeout=60):
    return not subprocess.run(argv, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              timeout=timeout).returncode


def _env(extra):
    env = dict(os.environ)
    env['PATH'] = '%s:%s' % (layout.BIN, env.get('PATH', '/usr/bin:/bin'))
    env.update(extra or {})
    return env


def pidfile(name):
    return os.path.join(layout.PIDS, name + '.pid')


def logfile(name):
    return os.path.join(layout.LOGS, name + '.log')


def read_pid(name):
    """The PID of daemon ``name`` if that very process still runs.

    A PID file holds the PID and the process's start time: this machine
    may restart with /run kept, and a PID file that outlived its process
    must never name another one (up would skip a service, down would kill
    a stranger)."""
    try:
        with open(pidfile(name)) as f:
            pid, started = f.read().split()
        pid = int(pid)
    except (OSError, ValueError):
        return None
    fields = _stat(pid)
    return pid if alive(pid, fields) and fields[_START_TIME] == started \
        else None


def _write_pid(name, pid):
    fields = _stat(pid)
    with open(pidfile(name), 'w') as f:
        f.write('%d %s\n' % (pid, fields[_START_TIME] if fields else None))


# In /proc/PID/stat after the command's ')': the state is field 3, the
# session 6, the start time (clock ticks after boot) 22.
_STATE, _SESSION, _START_TIME = 0, 3, 19


def _stat(pid):
    """The fields of /proc/PID/stat after the command name; None once the
    process is gone."""
    try:
        with open('/proc/%s/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None


def user_of(pid):
    """The name of the user process ``pid`` runs as (its effective uid:
    /proc/PID's owner)."""
    try:
        uid = os.stat('/proc/%d' % pid).st_uid
    except OSError:
        return ''
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def alive(pid, fields=None):
    """Whether ``pid`` runs (not gone, not a zombie); ``fields``: its
    /proc/PID/stat fields if already read."""
    fields = fields or _stat(pid)
    return fields is not None and fields[_STATE] != 'Z'


def start(name, argv, env=None, cwd=None, ready=None, timeout=120):
    """Start ``argv`` as daemon ``name`` unless it already runs; wait until
    ``ready()`` is true (or the daemon exits, or the deadline passes).

    A daemon that runs with another configuration than its files hold now
    (see config_fingerprint) is started again.

    :returns: True if it was started now
    """
    fingerprint = config_fingerprint(argv)
    if read_pid(name):
        if _stored_fingerprint(name) == fingerprint:
            return False
        say('restarting %s: its configuration changed' % name)
        stop(name)
    os.makedirs(layout.PIDS, exist_ok=True)
    os.makedirs(layout.LOGS, exist_ok=True)
    log = logfile(name)
    with open(log, 'ab') as out:
        out.write(('\n---- %s starting: %s\n' % (
            time.strftime('%Y-%m-%d %H:%M:%S'), ' '.join(argv))).encode())
        out.flush()
        process = subprocess.Popen(
            argv, env=_env(env), cwd=cwd or '/', stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _write_pid(name, process.pid)
    with open(pidfile(name) + '.config', 'w') as f:
        f.write(fingerprint)
    deadline = time.monotonic() + timeout
    while ready is not None and not ready():
        _check_running(name, process, log)
        if time.monotonic() > deadline:
            raise DeployError(name, 'not ready after %d s' % timeout, log)
        time.sleep(0.3)
    # Ready by a port that a predecessor still held, or gone at once.
    time.sleep(0.5)
    _check_running(name, process, log)
    say('%s started (pid %d)' % (name, process.pid))
    return True


def config_fingerprint(argv):
    """A digest of the configuration files in ``argv`` (arguments, or
    ``--option=path``, under /etc/kvmx-cloud); for a uWSGI configuration,
    of every file of its service's configuration directory."""
    paths = set()
    for arg in argv:
        path = arg.split('=', 1)[-1]
        if path.startswith(layout.ETC + '/') and os.path.isfile(path):
            paths.add(path)
            if path.endswith('-uwsgi.ini'):
                directory = os.path.dirname(path)
                paths.update(os.path.join(directory, n)
                             for n in os.listdir(directory))
    digest = hashlib.sha256()
    for path in sorted(p for p in paths if os.path.isfile(p)):
        with open(path, 'rb') as f:
            digest.update(path.encode() + b'\0' + f.read())
    return digest.hexdigest()


def _stored_fingerprint(name):
    try:
        with open(pidfile(name) + '.config') as f:
            return f.read()
    except OSError:
        return None


def _check_running(name, process, log):
    if process.poll() is not None:
        raise DeployError(name, 'exited with status %d while starting'
                          % process.returncode, log)


def session_members(sid):
    """PIDs of the processes of session ``sid``."""
    members = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        fields = _stat(entry)
        if fields is not None and int(fields[_SESSION]) == sid:
            members.append(int(entry))
    return members


def stop(name, timeout=STOP_TIMEOUT):
    """Stop daemon ``name`` and every process of its session: TERM, then
    KILL after ``timeout`` seconds."""
    stop_all([name], timeout)


def stop_all(names, timeout=STOP_TIMEOUT):
    """Stop the daemons ``names`` and their sessions at once (a slow one
    does not hold the others up)."""
    pids = []
    for name in names:
        pid = read_pid(name)
        if pid:
            pids += session_members(pid) or [pid]
    kill_all(pids, timeout)
    for name in names:
        _forget(name)


def _forget(name):
    for path in (pidfile(name), pidfile(name) + '.config'):
        if os.path.exists(path):
            os.unlink(path)


def kill_all(pids, timeout=STOP_TIMEOUT):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        else:
            return


def running():
    """Names of the daemons with a PID file, in start order."""
    if not os.path.isdir(layout.PIDS):
        return []
    names = [n[:-4] for n in os.listdir(layout.PIDS) if n.endswith('.pid')]
    return sorted(names, key=lambda n: os.stat(pidfile(n)).st_mtime)


def running_services():
    """The OpenStack daemons that run (those of the cloud's virtualenv)."""
    names = []
    for name in running():
        try:
            with open('/proc/%d/cmdline' % read_pid(name), 'rb') as f:
                argv = f.read().split(b'\0')
        except (OSError, TypeError):
            continue
        if any(arg.startswith(layout.VENV.encode()) or arg == b'uwsgi'
               for arg in argv):
            names.append(name)
    return names


def port_open(port, host=layout.ADDRESS):
    def check():
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False
    return check


def path_exists(path):
    return lambda: os.path.exists(path)


def unix_socket_listens(path):
    """Whether a process accepts connections on the socket ``path`` (a
    socket file alone may be left from a daemon that is gone)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def wait_for(what, check, timeout=120, interval=1.0, service=None, log=None):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise DeployError(service or what, 'timed out after %d s waiting '
                              'for %s' % (timeout, what), log)
        time.sleep(interval)
