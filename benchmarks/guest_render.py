"""Planning and rendering a huge NFV guest: nova-kvmx vs Nova's libvirt driver.

The guest is KVM's known limit: 288 vCPUs and 4 TiB over 8 NUMA nodes, all
vCPUs pinned, 1G pages, emulator threads isolated, realtime on all but
vCPU 0, CPU shares and an (unlimited) CPU quota. The host is Nova's fake
libvirt shape of 8 nodes x 20 cores x 2 threads (320 CPUs, 2 shared per
node) with 600 1G pages per node. Nova's own fitting
(``numa_fit_instance_to_host``) makes the claim once; then each driver
turns that claim into domain XML:

- ours: ``planner.plan_guest`` + ``render.render_domain``;
- Nova's: ``LibvirtDriver._get_guest_xml`` on the same fake host.

Prints the first (cold) call and the median of --repeat warm calls, in ms,
and the ratio Nova/ours. Figures only: nothing is asserted.

Run from the repo root:
    .venv/bin/python benchmarks/guest_render.py [--repeat N]
"""

import os
import sys

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
from nova import monkey_patch  # noqa: E402
monkey_patch.patch()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from unittest import mock  # noqa: E402

import fixtures  # noqa: E402
from lxml import etree  # noqa: E402
from nova import context as nova_context  # noqa: E402
import nova.conf  # noqa: E402
from nova import objects  # noqa: E402
from nova.tests.fixtures import libvirt as fakelibvirt  # noqa: E402
from nova import version as nova_version  # noqa: E402
from nova.virt import hardware  # noqa: E402
from nova.virt.libvirt import blockinfo  # noqa: E402
from nova.virt.libvirt import config as vconfig  # noqa: E402

from nova_kvmx.guest import planner  # noqa: E402
from nova_kvmx.guest import render  # noqa: E402
from nova_kvmx.guest import spec  # noqa: E402
from nova_kvmx.host import topology  # noqa: E402

CONF = nova.conf.CONF
NODES, CORES, THREADS = 8, 20, 2
GIB_PAGES_PER_NODE = 600
VCPUS, MEMORY_MB = 288, 4 * 1024 * 1024
EXTRA_SPECS = {
    'hw:numa_nodes': str(NODES), 'hw:cpu_policy': 'dedicated',
    'hw:mem_page_size': '1GB', 'hw:emulator_threads_policy': 'isolate',
    'hw:cpu_realtime': 'yes', 'hw:cpu_realtime_mask': '^0',
    'quota:cpu_shares': '2048', 'quota:cpu_period': '100000',
    'quota:cpu_quota': '-1',
}


def host_info():
    kb_per_node = (GIB_PAGES_PER_NODE + 64) * 1024 * 1024
    return fakelibvirt.HostInfo(
        cpu_nodes=NODES, cpu_sockets=1, cpu_cores=CORES, cpu_threads=THREADS,
        kB_mem=NODES * kb_per_node,
        mempages={node: fakelibvirt.create_mempages(
            [(4, 64 * 256 * 1024), (2048, 0),
             (1048576, GIB_PAGES_PER_NODE)]) for node in range(NODES)})


def configure(tmp):
    """One core (2 CPUs) of each node shared, the rest (38) dedicated:
    36 for the guest cell, and one more for emulator threads."""
    per_node = CORES * THREADS
    shared = [c for node in range(NODES)
              for c in range(node * per_node, node * per_node + 2)]
    everything = set(range(NODES * per_node))
    CONF.set_override('instances_path', tmp)
    CONF.set_override('cpu_shared_set', hardware.format_cpu_spec(shared),
                      'compute')
    CONF.set_override('cpu_dedicated_set', hardware.format_cpu_spec(
        everything - set(shared)), 'compute')
    CONF.set_override('virt_type', 'kvm', 'libvirt')


def host_numa(conn):
    caps = vconfig.LibvirtConfigCaps()
    caps.parse_str(conn.getCapabilities())
    cpus = topology.cpu_sets(range(NODES * CORES * THREADS))
    return caps, cpus, topology.numa_topology(caps, cpus)


def claimed_instance(numa):
    flavor = objects.Flavor(
        name='nfv.huge', flavorid='huge', vcpus=VCPUS, memory_mb=MEMORY_MB,
        root_gb=10, ephemeral_gb=0, swap=0, extra_specs=EXTRA_SPECS)
    image = objects.ImageMeta.from_dict(
        {'id': 'c0ffee00-0000-4000-8000-000000000000', 'name': 'vnf',
         'disk_format': 'qcow2', 'container_format': 'bare',
         'properties': {}})
    t0 = time.perf_counter()
    claim = hardware.numa_fit_instance_to_host(
        numa, hardware.numa_get_constraints(flavor, image),
        provider_mapping=None)
    fit_ms = (time.perf_counter() - t0) * 1000
    if claim is None:
        raise SystemExit('Nova could not fit the guest on the host shape')
    instance = objects.Instance(
        id=1, uuid='5e1f0c1e-0000-4000-8000-000000000001',
        display_name='vnf-huge', flavor=flavor, user_id='u',
        project_id='p', kernel_id=None, ramdisk_id=None,
        numa_topology=claim, image_ref=image.id, root_device_name=None,
        ephemeral_gb=0, system_metadata={}, config_drive=None,
        pci_devices=objects.PciDeviceList(), resources=None,
        os_type=None, vm_mode=None, host='bench', node='bench',
        device_metadata=None, trusted_certs=None, launched_at=None,
        task_state=None, old_flavor=None, new_flavor=None,
        metadata={}, availability_zone=None, vcpu_model=None,
        ephemeral_key_uuid=None)
    return instance, image, fit_ms


def numa_elements(xml):
    """The elements of a domain that carry the claim and the flavor's CPU
    tuning, for comparing drivers."""
    root = etree.fromstring(xml.encode())
    return {
        'vcpupin': {p.get('vcpu'): p.get('cpuset')
                    for p in root.findall('cputune/vcpupin')},
        'emulatorpin': root.find('cputune/emulatorpin').get('cpuset'),
        'iothreads': root.findtext('iothreads'),
        'iothreadpin': {p.get('iothread'): p.get('cpuset')
                        for p in root.findall('cputune/iothreadpin')},
        'cpu quota': {tag: root.findtext('cputune/' + tag)
                      for tag in ('shares', 'period', 'quota')},
        'vcpusched': [dict(s.attrib) for s in
                      root.findall('cputune/vcpusched')],
        'cells': [dict(c.attrib) for c in root.findall('cpu/numa/cell')],
        'memnodes': [dict(m.attrib) for m in
                     root.findall('numatune/memnode')],
        'pages': [dict(p.attrib) for p in
                  root.findall('memoryBacking/hugepages/page')],
        'locked': root.find('memoryBacking/locked') is not None,
        'topology': dict(root.find('cpu/topology').attrib),
    }


def timed(fn, repeat):
    def once():
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000
    cold = once()
    return cold, statistics.median(once() for _ in range(repeat))


def ours(instance, image, numa, cpus, tmp):
    settings = spec.DriverSettings(
        virt_type='kvm', host_cpus=topology.guest_cpu_pools(numa, cpus),
        small_page_kb=topology.small_page_kb(numa))
    files = spec.GuestFiles(root_disk=os.path.join(tmp, 'disk'),
                            console_log=os.path.join(tmp, 'console.log'))
    ctxt = nova_context.RequestContext('u', 'p')

    def render_once():
        return render.render_domain(planner.plan_guest(
            ctxt, instance, image, files, settings))
    return render_once


def nova(instance, image):
    from nova.virt.libvirt import driver as nova_driver
    import nova.conf.neutron
    nova.conf.neutron.register_dynamic_opts(CONF)
    drv = nova_driver.LibvirtDriver(mock.Mock(), False)
    drv.init_host('bench')
    disk_info = blockinfo.get_disk_info('kvm', instance, image)
    ctxt = nova_context.RequestContext('u', 'p')

    def render_once():
        return drv._get_guest_xml(ctxt, instance, [], disk_info, image)
    return render_once


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeat', type=int, default=21,
                   help='warm calls per driver (median printed)')
    args = p.parse_args()
    logging.disable(logging.CRITICAL)
    CONF([], project='nova', default_config_files=[])
    objects.register_all()

    with fixtures.Fixture() as env, tempfile.TemporaryDirectory() as tmp:
        env.useFixture(fakelibvirt.LibvirtFixture())
        conn = fakelibvirt.Connection('qemu:///system', hostname='bench',
                                      host_info=host_info())
        env.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.openAuth', lambda *a, **k: conn))
        configure(tmp)
        caps, cpus, numa = host_numa(conn)
        instance, image, fit_ms = claimed_instance(numa)

        render_ours = ours(instance, image, numa, cpus, tmp)
        results = {'ours': timed(render_ours, args.repeat)}
        same = 'n/a'
        try:
            render_nova = nova(instance, image)
            results['nova'] = timed(render_nova, args.repeat)
            ours_xml, nova_xml = (numa_elements(render_ours()),
                                  numa_elements(render_nova()))
            same = ', '.join('%s %s' % (key, 'same' if ours_xml[key] ==
                                        nova_xml[key] else 'DIFFERENT')
                             for key in ours_xml)
        except Exception as ex:  # report, do not hide ours
            if os.environ.get('BENCH_DEBUG'):
                import traceback
                traceback.print_exc()
            results['nova'] = 'n/a: %s: %s' % (type(ex).__name__,
                                               str(ex)[:80])

    print('machine: nproc=%d python=%s nova=%s platform=%s' % (
        os.cpu_count(), platform.python_version(),
        nova_version.version_string(), platform.platform()))
    print('guest: %d vCPUs pinned, %d GiB in 1G pages, %d NUMA nodes, '
          'emulator isolate, realtime ^0' % (VCPUS, MEMORY_MB // 1024, NODES))
    print('host: %d nodes x %d cores x %d threads (Nova fake libvirt); '
          "Nova's fitting took %.1f ms (once, not counted below)" % (
              NODES, CORES, THREADS, fit_ms))
    print('%-6s %10s %10s   (ms; warm = median of %d)' % (
        'driver', 'cold', 'warm', args.repeat))
    for kind, res in results.items():
        if isinstance(res, tuple):
            print('%-6s %10.1f %10.1f' % (kind, *res))
        else:
            print('%-6s %s' % (kind, res))
    print('domains compared:', same)
    if all(isinstance(r, tuple) for r in results.values()):
        print('x = Nova / ours: cold %.2f, warm %.2f' % tuple(
            results['nova'][i] / results['ours'][i] for i in (0, 1)))


if __name__ == '__main__':
    main()
