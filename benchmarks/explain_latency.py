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

"""How long ``nova-kvmx explain`` takes to answer, and where the time goes.

Wall time of whole commands, as a script calling explain sees it:

- one-shot JSON answers (a new process each: Python, Nova's import, the
  host, the answer); the first run of a series is "cold" (files maybe not
  in the page cache), the median of the others "warm";
- ``--flavors`` with many flavors in one process (per flavor);
- answers served by ``explain --serve`` to ``explain --server`` clients
  (the client process included): the first answer after the server
  started, then the median;

each on the captured 2-socket SNC host (saved capabilities, node devices)
with its usage from a usage file of three instances, and from a Nova cell
database (SQLite) where Nova's ResourceTracker claimed three such
instances (what a node whose nova.conf has ``[database] connection``
reads by default), and, when libvirtd answers, on this machine's libvirt
(usage from its domains). Then the import times
(``python -X importtime``) of the modules that dominate a one-shot answer
and of the client.

    .venv/bin/python benchmarks/explain_latency.py [--runs N] [--flavors N]
"""

import argparse
import atexit
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'tests', 'unit', 'data')
CONF = '''[DEFAULT]
reserved_huge_pages = node:0,size:1GB,count:14
[compute]
cpu_shared_set = 0-1,16-17
cpu_dedicated_set = 2-15,18-31
[pci]
device_spec = {"vendor_id": "8086", "product_id": "154c"}
alias = {"vendor_id": "8086", "product_id": "154c", "device_type": \
"type-VF", "name": "nic-vf"}
'''
LIVE_CONF = '[kvmx]\nconnection_uri = qemu:///system\n'
USAGE = '''instances:
- name: vnf-a
  cells:
  - {host_cell: 1, memory_mb: 8192, page_size: 1G,
     pinned: {0: 4, 1: 20, 2: 5, 3: 21, 4: 6, 5: 22}}
- name: vnf-b
  pci_devices: ["0000:81:02.0", "0000:81:02.1"]
  cells:
  - {host_cell: 2, memory_mb: 8192, page_size: 1G,
     pinned: {0: 8, 1: 24, 2: 9, 3: 25, 4: 10, 5: 26, 6: 11}}
- name: vnf-c
  cells:
  - {host_cell: 3, memory_mb: 12288, page_size: 1G,
     pinned: {0: 12, 1: 28, 2: 13, 3: 29, 4: 14, 5: 30}}
'''
FLAVOR = ['--vcpus', '4', '--ram', '8192', '--extra-spec',
          'hw:cpu_policy=dedicated', '--extra-spec', 'hw:mem_page_size=1GB',
          '--extra-spec', 'pci_passthrough:alias=nic-vf:1']
LIVE_FLAVOR = ['--vcpus', '1', '--ram', '256']
# Three instances of about the usage file's size, claimed on the SNC host
# by Nova's own ResourceTracker into a new Nova database (the unit tests'
# tests.unit.nova_host), in a process of its own: argv URL, nova.conf.
MAKE_DATABASE = '''
import sys
import warnings
warnings.filterwarnings("ignore")
from tests.unit import nova_host
from nova.db.main import models
from nova_kvmx.cmd import commands, hostdata, novadb
commands.prepare()
commands.load_config([sys.argv[2]])
url = sys.argv[1]
models.BASE.metadata.create_all(
    novadb.context_for(url).db_connection.writer.get_engine())
host = nova_host.NovaHost(hostdata.from_files(sys.argv[3], sys.argv[4]),
                          url=url)
host.setUp()
pinned = {"hw:cpu_policy": "dedicated", "hw:mem_page_size": "1GB"}
host.boot("vnf-a", 6, 8192, extra_specs=pinned)
host.boot("vnf-b", 7, 8192, extra_specs=dict(
    pinned, **{"pci_passthrough:alias": "nic-vf:2"}))
host.boot("vnf-c", 6, 12288, extra_specs=pinned)
'''
IMPORTS = ('nova_kvmx.cmd.commands', 'nova.virt.hardware',
           'nova.conf', 'nova.db.main.api', 'sqlalchemy', 'oslo_config.cfg',
           'libvirt', 'lxml.etree', 'nova_kvmx.cmd.main',
           'nova_kvmx.cmd.serve')


def run(args, cwd):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, '-m', 'nova_kvmx.cmd'] + args,
                          cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError('%s: %s' % (' '.join(args), proc.stderr))
    return elapsed


def series(args, cwd, runs):
    times = [run(args, cwd) for _ in range(runs)]
    return times[0], statistics.median(times[1:] or times)


def start_server(sock, cwd):
    proc = subprocess.Popen([sys.executable, '-m', 'nova_kvmx.cmd',
                             'explain', '--serve', sock], cwd=cwd,
                            stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() - start > 300:
            raise RuntimeError('the explain server did not start')
        time.sleep(0.05)
    return proc, time.monotonic() - start


def nova_database(tmp, conf, caps, devices):
    """The URL of a new Nova cell database (SQLite) with the SNC host's
    compute node record (host compute1, node node1) and three instances
    claimed on it (MAKE_DATABASE)."""
    url = 'sqlite:///' + os.path.join(tmp, 'nova.sqlite')
    proc = subprocess.run([sys.executable, '-c', MAKE_DATABASE, url, conf,
                           caps, devices], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError('cannot make the Nova database: %s'
                           % proc.stderr)
    return url


def libvirt_reachable():
    try:
        import libvirt
        libvirt.registerErrorHandler(lambda _c, _e: None, None)
        libvirt.openReadOnly('qemu:///system').close()
        return True
    except Exception:
        return False


def import_times():
    """{module: ms} of importing each module alone, in a fresh process
    (the cumulative figure of ``python -X importtime``)."""
    result = {}
    for module in IMPORTS:
        proc = subprocess.run(
            [sys.executable, '-X', 'importtime', '-c',
             'import warnings; warnings.filterwarnings("ignore"); '
             'import %s' % module], cwd=REPO, capture_output=True,
            text=True, timeout=300)
        for line in proc.stderr.splitlines():
            match = re.match(r'import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$',
                             line)
            if match and match.group(2) == module:
                result[module] = int(match.group(1)) / 1e3
    return result


def in_process(conf, saved, flavors):
    """(median, max) seconds of one answer inside a process that has
    Nova imported and the host read: the request built by Nova's
    validators, then judged (what --flavors and each served child do
    after their start-up)."""
    import warnings
    warnings.filterwarnings('ignore')
    sys.path.insert(0, REPO)    # this tree's nova_kvmx, as the commands
    from nova_kvmx.cmd import commands
    from nova_kvmx.cmd import explain
    from nova_kvmx.cmd import hostdata
    from nova_kvmx.cmd import hostview
    from nova_kvmx.cmd import request
    from nova_kvmx.cmd import usagefile
    commands.prepare()
    commands.load_config([conf])
    caps, nodedev, usage_file = saved
    view = hostview.from_facts(hostdata.from_files(caps, nodedev),
                               usagefile.load(usage_file))
    times = []
    for _name, kwargs in request.load_flavors(flavors):
        start = time.monotonic()
        explain.explain_view(view, request.build(**kwargs))
        times.append(time.monotonic() - start)
    return statistics.median(times[1:]), max(times)


def fmt(seconds):
    return '%7.3f' % seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--flavors', type=int, default=50)
    opts = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix='explain-bench-')
    atexit.register(shutil.rmtree, tmp, True)
    paths = {}
    for name, text in (('nova.conf', CONF), ('live.conf', LIVE_CONF),
                       ('usage.yaml', USAGE)):
        paths[name] = os.path.join(tmp, name)
        with open(paths[name], 'w') as f:
            f.write(text)
    flavors = os.path.join(tmp, 'flavors.yaml')
    with open(flavors, 'w') as f:
        for i in range(opts.flavors):
            f.write('- {name: f%d, vcpus: %d, ram: %d, extra_specs: '
                    '{"hw:cpu_policy": dedicated, "hw:mem_page_size": 1GB}}'
                    '\n' % (i, 1 + i % 8, 1024 * (1 + i % 12)))
    caps = os.path.join(DATA, 'topology-2socket-snc2-smt.xml')
    devices = os.path.join(DATA, 'nodedev-dump-snc')
    saved_host = ['explain', '--config-file', paths['nova.conf'],
                  '--capabilities', caps, '--node-devices', devices]
    saved = saved_host + ['--usage-file', paths['usage.yaml'], '--format',
                          'json']
    paths['database.conf'] = os.path.join(tmp, 'database.conf')
    with open(paths['database.conf'], 'w') as f:
        f.write('[database]\nconnection = %s\n' % nova_database(
            tmp, paths['nova.conf'], caps, devices))
    hosts = [('saved SNC host + usage file', saved, FLAVOR),
             ('saved SNC host + Nova database', saved_host + [
                 '--config-file', paths['database.conf'], '--usage',
                 'database', '--host', 'compute1', '--node', 'node1',
                 '--format', 'json'], FLAVOR)]
    if libvirt_reachable():
        hosts.append(('live libvirt, usage from domains',
                      ['explain', '--config-file', paths['live.conf'],
                       '--format', 'json'], LIVE_FLAVOR))

    print('%d CPUs, load average %s, Python %s' % (
        os.cpu_count(), ' '.join('%.2f' % x for x in os.getloadavg()),
        sys.version.split()[0]))
    print('\nwall seconds             %-34s  cold    warm' % 'host')
    for label, args, flavor in hosts:
        cold, warm = series(args + flavor, REPO, opts.runs)
        print('one-shot JSON            %-34s %s %s' % (label, fmt(cold),
                                                        fmt(warm)))
    for label, args, flavor in hosts:
        cold, warm = series(args + ['--flavors', flavors], REPO,
                            max(2, opts.runs // 2))
        one, _ = series(args + flavor, REPO, 1)
        print('--flavors x%-3d total    %-34s %s %s' % (
            opts.flavors, label, fmt(cold), fmt(warm)))
        print('  per flavor (total/%-3d) %-34s %s %s' % (
            opts.flavors, label, fmt(cold / opts.flavors),
            fmt(warm / opts.flavors)))
        print('  each after the first   %-34s %s %s' % (
            label, fmt(max(cold - one, 0) / (opts.flavors - 1)),
            fmt(max(warm - one, 0) / (opts.flavors - 1))))
    sock = os.path.join(tmp, 'explain.sock')
    proc, startup = start_server(sock, REPO)
    try:
        print('--serve start-up (imports)                                  '
              '%s' % fmt(startup))
        for label, args, flavor in hosts:
            client = args[:1] + ['--server', sock] + args[1:] + flavor
            cold, warm = series(client, REPO, opts.runs)
            print('served JSON (client)     %-34s %s %s' % (
                label, fmt(cold), fmt(warm)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    median, worst = in_process(
        paths['nova.conf'], (caps, devices, paths['usage.yaml']), flavors)
    print('one answer in a warm process (median, max)                  '
          '%s %s' % (fmt(median), fmt(worst)))

    print('\nimport of one module alone, ms (python -X importtime)')
    for module, ms in sorted(import_times().items(), key=lambda kv: -kv[1]):
        print('  %-28s %8.0f' % (module, ms))


if __name__ == '__main__':
    main()
