# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""``explain --serve``: Nova imported once, every question answered fast.

Importing Nova is nearly all of a one-shot explain's time (seconds); the
answer itself takes tens of milliseconds. The server imports Nova and the
commands once, then answers each client in a forked child that runs the
ordinary command on the client's arguments: the same code, the client's
nova.conf loaded afresh, libvirt and Nova's database read anew. A served
answer is the one-shot answer, only sooner. The client
(``explain --server``) imports nothing of Nova.

One JSON line each way on a Unix socket: the client sends
``{"argv": [...], "cwd": "..."}``, the server answers ``{"status": N,
"stdout": "...", "stderr": "..."}``. The socket is made mode 0600: the
server answers with its own privileges (it reads the files the arguments
name, and writes ``--save-usage``), so only its own user may ask.
"""

import contextlib
import io
import json
import os
import signal
import socket

CLIENT_TIMEOUT = 120
MAX_REQUEST = 1024 * 1024
# Modules the commands import only on first use, loaded before forking so
# that no child pays for them.
_WARM = ('nova.api.validation.extra_specs.validators',
         'nova.scheduler.utils', 'nova.compute.utils',
         'oslo_db.sqlalchemy.enginefacade', 'sqlalchemy.dialects.mysql',
         'sqlalchemy.dialects.sqlite', 'pymysql', 'yaml', 'libvirt')


def _error(err, message):
    err.write('nova-kvmx explain: error: %s\n' % message)
    return 2


def _recv_line(sock, limit):
    data = b''
    while not data.endswith(b'\n'):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError('more than %d bytes' % limit)
    return data


def ask(path, argv, out, err):
    """Have the server at ``path`` answer ``argv``; print its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CLIENT_TIMEOUT)
    try:
        sock.connect(path)
        sock.sendall(json.dumps({'argv': argv, 'cwd': os.getcwd()}).encode()
                     + b'\n')
        answer = json.loads(_recv_line(sock, 1 << 30) or b'null')
    except (OSError, ValueError) as ex:
        return _error(err, 'no answer from the explain server at %s: %s '
                           '(start one with "nova-kvmx explain --serve %s")'
                      % (path, ex, path))
    finally:
        sock.close()
    if not isinstance(answer, dict):
        return _error(err, 'the explain server at %s closed the connection'
                      % path)
    out.write(answer.get('stdout', ''))
    err.write(answer.get('stderr', ''))
    return int(answer.get('status', 2))


def _warm_up():
    import importlib

    from nova.api.validation.extra_specs import validators
    from nova.db.main import models  # noqa: F401 - the mappers configured
    from sqlalchemy import orm
    for name in _WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    validators.load_validators()
    # SQLAlchemy configures Nova's mappers on the first query, a tenth of
    # a second: once here, not in every child reading Nova's database.
    orm.configure_mappers()


def _listen(path):
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)     # left by a server that is gone
        else:
            raise OSError('%s: an explain server already answers there'
                          % path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _answer(conn):
    """In the child: run the command the client asked for."""
    import logging

    from nova_kvmx.cmd import main
    # Logs (--debug) go to the client's stderr, not the server's.
    logging.getLogger().handlers[:] = []
    out, err = io.StringIO(), io.StringIO()
    status = 2
    conn.settimeout(CLIENT_TIMEOUT)
    try:
        request = json.loads(_recv_line(conn, MAX_REQUEST))
        argv = [str(a) for a in request['argv']]
        if any(a == '--serve' or a.startswith('--serve=') for a in argv):
            raise ValueError('a served question cannot start a server')
        os.chdir(request.get('cwd') or '/')
        with contextlib.redirect_stderr(err):
            try:
                status = main.main(argv, out=out, err=err)
            except SystemExit as ex:    # argparse's errors and --help
                status = ex.code if isinstance(ex.code, int) else 2
    except (ValueError, KeyError, TypeError, OSError) as ex:
        err.write('nova-kvmx explain: error: bad request to the explain '
                  'server: %s\n' % ex)
    conn.sendall(json.dumps({'status': status, 'stdout': out.getvalue(),
                             'stderr': err.getvalue()}).encode() + b'\n')


def _reap():
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(path, err):
    """Answer clients at ``path`` until SIGTERM or SIGINT."""
    _warm_up()
    try:
        sock = _listen(path)
    except OSError as ex:
        return _error(err, 'cannot serve at %s: %s' % (path, ex))

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    err.write('nova-kvmx explain: serving at %s (pid %d)\n' % (
        path, os.getpid()))
    err.flush()
    try:
        while True:
            conn, _addr = sock.accept()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    sock.close()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    _answer(conn)
                except BaseException:   # noqa: B902 - the child must exit
                    code = 1
                finally:
                    os._exit(code)
            conn.close()
            _reap()
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
    return 0
