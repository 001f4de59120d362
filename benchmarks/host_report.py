"""Periodic host report at scale: nova-kvmx vs Nova's stock libvirt driver.

Measures, per host shape (NUMA nodes x SR-IOV VFs x defined instances), the
wall time of the resource tracker's periodic pair of calls,
``get_available_resource(node)`` followed by ``update_provider_tree(tree,
node)``, for ``nova_kvmx.driver.KVMXDriver`` and for
``nova.virt.libvirt.driver.LibvirtDriver``, both on the *same* fake libvirt
connection (Nova's ``nova.tests.fixtures.libvirt``) so that the shapes need
not exist on this machine. Prints the cold (first call after init_host) and
warm (median of --repeat calls) times in ms and the ratio Nova/ours; for
ours also the median of periods that each follow one node-device update
event (one VF moved to another NUMA node: re-read, the report assembled
again), and at the end how the times grow.

Nova's fake libvirt has no node-device events: the benchmark adds to its
Connection a ``nodeDeviceEventRegisterAny`` that only records the callback
and returns an id (tests/unit/nodedev_events.py), so that our driver takes
its cached path (without events it lists every device in every period).
Nova's own driver caches its PCI report for the life of the process
(``functools.cache`` on ``LibvirtDriver._get_pci_passthrough_devices`` in
Nova 34: it never sees a device change), so its warm figure has no PCI
work either.

Figures only: nothing is asserted. Libvirt itself is faked, so the numbers
measure the drivers' own Python work (XML parsing, object building), not
libvirtd round trips.

Run from the repo root:
    .venv/bin/python benchmarks/host_report.py [--quick]
        [--repeat N] [--profile]
"""

import os
import sys

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
from nova import monkey_patch  # noqa: E402
monkey_patch.patch()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from unittest import mock  # noqa: E402
import uuid  # noqa: E402

import fixtures  # noqa: E402
import nova.conf  # noqa: E402
from nova.compute import provider_tree  # noqa: E402
from nova.tests.fixtures import libvirt as fakelibvirt  # noqa: E402
from nova import version as nova_version  # noqa: E402

from nova_kvmx import driver as kvmx_driver  # noqa: E402
from tests.unit import nodedev_events  # noqa: E402

CONF = nova.conf.CONF
CORES, THREADS = 4, 2          # per NUMA node: 8 host CPUs
VFS_PER_PF, PFS_PER_BUS = 4, 32  # fake VFs use functions 1-4 of a PF's slot

DOMAIN_XML = """<domain type='kvm'>
  <name>instance-%(n)08x</name><uuid>%(uuid)s</uuid>
  <memory>524288</memory><vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><disk type='file' device='disk'>
    <driver name='qemu' type='raw'/>
    <source file='%(disk)s'/><target dev='vda' bus='virtio'/>
  </disk></devices>
</domain>"""


def pci_info(numa_nodes, vfs):
    """Nova's fake PFs and VFs, spread over buses (32 PFs of 4 VFs each,
    so every VF gets a valid slot/function) and round-robin NUMA nodes."""
    info = fakelibvirt.HostPCIDevicesInfo(num_pfs=0, num_vfs=0)
    per_bus = PFS_PER_BUS * VFS_PER_PF
    for b in range(0, vfs, per_bus):
        n_vfs = min(per_bus, vfs - b)
        part = fakelibvirt.HostPCIDevicesInfo(
            num_pfs=n_vfs // VFS_PER_PF, num_vfs=n_vfs,
            numa_node=(b // per_bus) % numa_nodes, bus=0x10 + b // per_bus)
        info.devices.update(part.devices)
    return info


def change_device(conn, name):
    """Move a device to another NUMA node and send its update event, as
    libvirt would."""
    pci_dev = conn.pci_info.devices[name]
    pci_dev.numa_node = (pci_dev.numa_node + 1) % 2
    pci_dev.generate_xml()
    conn.send_update(name)


def make_connection(numa_nodes, vfs, instances, tmp):
    host_info = fakelibvirt.HostInfo(
        cpu_nodes=numa_nodes, cpu_sockets=1, cpu_cores=CORES,
        cpu_threads=THREADS, kB_mem=numa_nodes * 16 * 1024 * 1024)
    conn = nodedev_events.Connection(
        'qemu:///system', hostname='bench', host_info=host_info,
        pci_info=pci_info(numa_nodes, vfs))
    for n in range(instances):
        disk = os.path.join(tmp, 'disk-%d' % n)  # sparse raw: no qemu-img
        with open(disk, 'wb') as f:
            f.truncate(1 << 30)
        conn.defineXML(DOMAIN_XML % {'n': n, 'uuid': uuid.uuid4(),
                                     'disk': disk}).create()
    return conn


def configure(numa_nodes, vfs, tmp):
    ncpus = numa_nodes * CORES * THREADS
    CONF.set_override('instances_path', tmp)
    CONF.set_override('cpu_shared_set', '0-1', 'compute')
    CONF.set_override('cpu_dedicated_set', '2-%d' % (ncpus - 1), 'compute')
    spec = [json.dumps({'vendor_id': '8086', 'product_id': '1515',
                        'physical_network': 'physnet1'})] if vfs else []
    CONF.set_override('device_spec', spec, 'pci')


def wall_clock():
    return time.perf_counter()


def cpu_clock():
    """CPU seconds of this process and of its finished children (Nova's
    driver runs ``uptime``): unlike wall time, not inflated by other
    processes on a busy machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


CLOCK = wall_clock


def timed(drv, node, repeat, conn=None):
    """(cold, warm) ms; with ``conn``, also the median ms of periods that
    each follow an update event of one VF (the last device listed)."""
    # one tree across calls, as the resource tracker keeps its cached tree
    tree = provider_tree.ProviderTree()
    tree.new_root(node, str(uuid.uuid4()))

    def once(event=None):
        if event:
            change_device(conn, event)
        t0 = CLOCK()
        drv.get_available_resource(node)
        drv.update_provider_tree(tree, node)
        return (CLOCK() - t0) * 1000
    cold = once()
    warm = statistics.median(once() for _ in range(repeat))
    if conn is None:
        return cold, warm
    names = list(conn.pci_info.devices)
    return cold, warm, statistics.median(
        once(names[-1]) for _ in range(repeat)) if names else None


def new_driver(kind):
    if kind == 'ours':
        drv = kvmx_driver.KVMXDriver(mock.Mock(), False)
    else:
        from nova.virt.libvirt import driver as nova_driver
        drv = nova_driver.LibvirtDriver(mock.Mock(), False)
    drv.init_host('bench')
    return drv


def measure(kind, conn, repeat, profile=False):
    """(cold ms, warm ms[, event ms]) or an 'n/a: reason' string."""
    try:
        with fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.openAuth',
                lambda *a, **k: conn):
            drv = new_driver(kind)
            node = drv.get_available_nodes()[0]
            result = timed(drv, node, repeat,
                           conn if kind == 'ours' else None)
            if profile:
                prof = cProfile.Profile()
                prof.enable()
                timed(drv, node, repeat)
                prof.disable()
                pstats.Stats(prof, stream=sys.stdout).sort_stats(
                    'cumulative').print_stats(25)
            with contextlib.suppress(Exception):
                drv.cleanup_host('bench')
            return result
    except Exception as ex:  # report, do not fail the whole table
        if os.environ.get('BENCH_DEBUG'):
            import traceback
            traceback.print_exc()
        return 'n/a: %s: %s' % (type(ex).__name__, str(ex)[:60])


class Env(fixtures.Fixture):
    """Nova's LibvirtFixture plus our modules pointed at fake libvirt,
    and no database for Nova's driver."""

    def __init__(self, events=True):
        super().__init__()
        self.events = events

    def _setUp(self):
        self.useFixture(fakelibvirt.LibvirtFixture())
        self.useFixture(nodedev_events.Fixture())
        if not self.events:
            # as libvirt refuses it when no event loop runs
            self.useFixture(fixtures.MockPatch(
                'tests.unit.nodedev_events.Connection.'
                'nodeDeviceEventRegisterAny',
                side_effect=fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError, 'internal error: could not '
                    'initialize domain event timer',
                    error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)))
        self.useFixture(fixtures.MonkeyPatch('nova_kvmx.lifecycle.libvirt',
                                             fakelibvirt))
        # Nova's driver asks the database for this host's instances (disk
        # overcommit); there is no database here: none are known to it.
        from nova import objects
        objects.register_all()
        self.useFixture(fixtures.MockPatch(
            'nova.objects.InstanceList.get_by_filters', return_value=[]))
        self.useFixture(fixtures.MockPatch(
            'nova.objects.BlockDeviceMappingList.bdms_by_instance_uuid',
            return_value={}))
        # first report of a new compute node: nothing to reshape to PCPU
        self.useFixture(fixtures.MockPatch(
            'nova.objects.ComputeNode.get_by_nodename',
            return_value=mock.Mock(numa_topology=None)))


def fmt(res, idx):
    if isinstance(res, tuple) and res[idx] is not None:
        return '%9.1f' % res[idx]
    return '%9s' % 'n/a'


# (axis, its place in a result key, unit, the other axes' values shown,
#  the figures whose growth is printed: (driver, index in its tuple, name))
GROWTH = (
    ('vfs', 1, 1000, {2: 100}, (('ours', 0, 'ours-cold'),
                                ('ours', 2, 'ours-event'),
                                ('nova', 0, 'nova-cold'))),
    ('inst', 2, 100, {1: 1024}, (('ours', 1, 'ours-warm'),
                                 ('nova', 1, 'nova-warm'))),
    ('numa', 0, 1, {1: 1024, 2: 100}, (('ours', 1, 'ours-warm'),
                                       ('nova', 1, 'nova-warm'))),
)


def growth(results):
    """How the times grow along each axis: ms per unit between successive
    points (steady slopes: linear growth)."""
    lines = []
    names = ('numa', 'vfs', 'inst')
    for axis, pos, unit, shown, figures in GROWTH:
        rows = {}
        for key in sorted(results):
            if all(key[p] == v for p, v in shown.items()):
                rows.setdefault(key[:pos] + key[pos + 1:], []).append(key)
        for other, row in sorted(rows.items()):
            for kind, idx, label in figures:
                pts = [(k[pos], results[k][kind]) for k in row
                       if isinstance(results[k][kind], tuple) and
                       results[k][kind][idx] is not None]
                if len(pts) < 3:
                    continue
                slopes = ['%.1f' % ((b[idx] - a[idx]) / (y - x) * unit)
                          for (x, a), (y, b) in zip(pts, pts[1:])]
                where = ' '.join('%s=%d' % (n, v) for n, v in zip(
                    [n for n in names if n != axis], other))
                lines.append('%-10s %-16s ms per %d %s: %s' % (
                    label, where, unit, axis, ' / '.join(slopes)))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true',
                   help='small grid: NUMA {2,4} x VFs {0,1024} x inst {0,100}')
    p.add_argument('--repeat', type=int, default=7,
                   help='warm calls per driver and shape (median printed)')
    p.add_argument('--cpu', action='store_true',
                   help='CPU time of the process and its children instead '
                        'of wall time (steadier on a busy machine)')
    p.add_argument('--no-events', action='store_true',
                   help='libvirt refuses node-device events: ours lists '
                        'every device every period')
    p.add_argument('--profile', action='store_true',
                   help='cProfile our warm path at 4 NUMA/1024 VFs/100 inst')
    args = p.parse_args()
    global CLOCK
    CLOCK = cpu_clock if args.cpu else wall_clock
    logging.disable(logging.CRITICAL)  # Nova logs every fake device
    CONF([], project='nova', default_config_files=[])

    if args.quick:
        grid = [(n, v, i) for n in (2, 4) for v in (0, 1024) for i in (0, 100)]
    else:
        grid = [(n, v, i) for n in (2, 4, 8) for v in (0, 256, 1024, 4096)
                for i in (0, 100, 200)]
    if args.profile:
        grid = [(4, 1024, 100)]

    print('machine: nproc=%d python=%s nova=%s platform=%s' % (
        os.cpu_count(), platform.python_version(),
        nova_version.version_string(), platform.platform()))
    print('calls: get_available_resource + update_provider_tree on Nova\'s '
          'fake libvirt; warm = median of %d; %s in ms; load average %s' % (
              args.repeat, 'CPU times' if args.cpu else 'wall times',
              ' '.join('%.1f' % x for x in os.getloadavg())))
    if args.no_events:
        print('fake libvirt: node-device event registration refused '
              '(ours lists every device every period)')
    else:
        print('fake libvirt: nodeDeviceEventRegisterAny added to its '
              'Connection (records the callback); ours-event = a period '
              'after one VF changed (update event)')
    head = '%5s %5s %5s | %9s %9s %10s | %9s %9s | %7s %7s' % (
        'numa', 'vfs', 'inst', 'ours-cold', 'ours-warm', 'ours-event',
        'nova-cold', 'nova-warm', 'x-cold', 'x-warm')
    print(head)
    print('-' * len(head))
    notes, results = [], {}
    with Env(events=not args.no_events), \
            tempfile.TemporaryDirectory() as tmp:
        for numa, vfs, inst in grid:
            configure(numa, vfs, tmp)
            res = {}
            for kind in ('ours', 'nova'):
                # a fresh connection each: no cache shared between drivers
                conn = make_connection(numa, vfs, inst, tmp)
                res[kind] = measure(kind, conn, args.repeat,
                                    args.profile and kind == 'ours')
                if isinstance(res[kind], str):
                    notes.append('%s %s/%s/%s: %s' % (kind, numa, vfs, inst,
                                                      res[kind]))
            ratio = ['%7s' % 'n/a'] * 2
            if all(isinstance(r, tuple) for r in res.values()):
                ratio = ['%7.2f' % (res['nova'][i] / res['ours'][i])
                         for i in (0, 1)]
            results[numa, vfs, inst] = res
            print('%5d %5d %5d | %s %s %s | %s %s | %s %s' % (
                numa, vfs, inst, fmt(res['ours'], 0), fmt(res['ours'], 1),
                ' ' + fmt(res['ours'], 2), fmt(res['nova'], 0),
                fmt(res['nova'], 1), *ratio), flush=True)
    for note in notes:
        print(note)
    print('x = Nova / ours (above 1: ours is faster)')
    lines = growth(results)
    if lines:
        print('growth:')
        for line in lines:
            print('  ' + line)


if __name__ == '__main__':
    main()
