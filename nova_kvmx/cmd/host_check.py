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

"""Is this host ready for NFV guests: ``nova-kvmx host-check``.

Each check returns a :class:`Result` (PASS, WARN or FAIL, what was found,
and how to fix it). FAIL means nova-compute will not start or a class of
NFV flavors cannot run; WARN means they run, but worse than they could
(or the check could not be made). nova.conf is read through Nova's own
parsers, and judged by the same code nova-compute runs at start-up.
"""

import dataclasses
import re

import nova.conf
from nova import exception
from nova.pci import whitelist
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from oslo_utils import versionutils

from nova_kvmx.cmd import hostdata
from nova_kvmx.cmd import systree
from nova_kvmx.host import connection
from nova_kvmx.host import options as host_options
from nova_kvmx.host import topology

CONF = nova.conf.CONF
PASS, WARN, FAIL = 'PASS', 'WARN', 'FAIL'
GRUB = ('(GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and '
        'reboot)')


@dataclasses.dataclass
class Result:
    status: str
    name: str
    detail: str
    fix: str = ''

    def as_dict(self):
        return dataclasses.asdict(self)


def _spec(cpus):
    return hardware.format_cpu_spec(cpus) or 'none'


def _virt_type():
    """The configured domain type, lxc or parallels included: host-check
    reports one nova-compute would refuse instead of stopping on it."""
    try:
        return host_options.virt_type(CONF)
    except exception.InvalidConfiguration:
        return CONF.libvirt.virt_type


def check_virtualization(tree):
    name = 'virtualization'
    flags = tree.cpu_flags() & {'vmx', 'svm'}
    kvm = tree.exists('dev/kvm')
    emulated = _virt_type() != 'kvm'
    if flags and kvm:
        return Result(PASS, name, 'CPU flag %s, /dev/kvm present'
                      % ','.join(sorted(flags)))
    if kvm:
        return Result(WARN, name, '/dev/kvm is present but /proc/cpuinfo '
                      'shows neither vmx nor svm (a nested or paravirtual '
                      'host?)', 'check that KVM guests boot here; otherwise '
                      'set [libvirt] virt_type = qemu (emulation, slow)')
    fix = ('enable VT-x/AMD-V in the firmware setup and load the module '
           '(modprobe kvm_intel or kvm_amd)')
    return Result(WARN if emulated else FAIL, name, '%s; /dev/kvm is '
                  'missing%s' % (
                      'CPU flag ' + ','.join(sorted(flags)) if flags else
                      'no vmx/svm CPU flag',
                      ' ([libvirt] virt_type=%s does not need it)'
                      % _virt_type() if emulated else ''), fix)


def check_iommu(tree):
    name = 'IOMMU'
    args = [k + ('=' + v if v is not None else '') for k, v in tree.cmdline()
            if k in ('intel_iommu', 'amd_iommu', 'iommu')]
    groups = tree.iommu_groups()
    cmdline = 'kernel args: %s' % (' '.join(args) or 'none')
    if groups:
        return Result(PASS, name, '%d IOMMU groups (%s)' % (len(groups),
                                                            cmdline))
    passthrough = bool(CONF.pci.device_spec)
    return Result(
        FAIL if passthrough else WARN, name,
        'no IOMMU groups in /sys/kernel/iommu_groups (%s)%s' % (
            cmdline, '; [pci] device_spec needs them for passthrough'
            if passthrough else '; PCI passthrough and SR-IOV need them'),
        'enable VT-d/AMD-Vi in the firmware setup and add intel_iommu=on '
        'iommu=pt (Intel) or iommu=pt (AMD) to the kernel command line '
        + GRUB)


def _node_cells(tree, nodes):
    """The nodes' page counts as libvirt's capabilities cells, so that
    ``reserved_huge_pages`` is judged by the driver's own check."""
    cells = []
    for node in nodes:
        cell = vconfig.LibvirtConfigCapsNUMACell()
        cell.id = node
        pages = [(4, tree.node_memory_kb(node) // 4)] + [
            (size, allocated) for size, (allocated, _free) in sorted(
                tree.node_hugepages(node).items())]
        for size, total in pages:
            page = vconfig.LibvirtConfigCapsNUMAPages()
            page.size, page.total = size, total
            cell.mempages.append(page)
        cells.append(cell)
    return cells


def _page(size_kb):
    return '%dM' % (size_kb // 1024) if size_kb < 1048576 else \
        '%dG' % (size_kb // 1048576)


def check_hugepages(tree):
    name = 'hugepages'
    nodes = tree.numa_nodes()
    if not nodes:
        return [Result(WARN, name, 'no NUMA nodes in '
                       '/sys/devices/system/node', 'a kernel built with '
                       'NUMA support is needed for NUMA-aware placement')]
    try:
        reserved = topology.reserved_pages(CONF.reserved_huge_pages,
                                           _node_cells(tree, nodes))
    except exception.InvalidConfiguration as ex:
        return [Result(FAIL, name, ex.format_message(),
                       'lower reserved_huge_pages or allocate more pages')]
    per_node, usable = [], 0
    for node in nodes:
        pages = tree.node_hugepages(node)
        parts = []
        for size, (allocated, free) in sorted(pages.items()):
            kept = reserved.get(node, {}).get(size, 0)
            usable += allocated - kept
            parts.append('%s %d (free %d, reserved %d)' % (
                _page(size), allocated, free, kept))
        per_node.append('node %d: %s' % (node, ', '.join(parts) or 'none'))
    detail = '; '.join(per_node)
    fix = ('allocate huge pages at boot: default_hugepagesz=1G '
           'hugepagesz=1G hugepages=<n> on the kernel command line %s, or '
           'per node: echo <n> > /sys/devices/system/node/node<N>/'
           'hugepages/hugepages-2048kB/nr_hugepages' % GRUB)
    results = []
    if usable <= 0:
        results.append(Result(
            WARN, name, 'no huge pages for guests (%s): flavors with '
            'hw:mem_page_size cannot be placed' % detail, fix))
    else:
        results.append(Result(PASS, name, detail))
        if 'hugetlbfs' not in tree.mount_types():
            results.append(Result(
                FAIL, 'hugetlbfs', 'huge pages are allocated but no '
                'hugetlbfs is mounted: libvirt cannot back guests with them',
                'mount -t hugetlbfs hugetlbfs /dev/hugepages before '
                'libvirtd starts (and add it to /etc/fstab)'))
    return results


def _cmdline_cpus(value):
    """CPUs of isolcpus/nohz_full/rcu_nocbs; isolcpus may start with
    flags (``isolcpus=managed_irq,domain,2-7``)."""
    spec = ','.join(p for p in (value or '').split(',')
                    if re.fullmatch(r'\^?\d+(-\d+)?', p))
    try:
        return hardware.parse_cpu_spec(spec) if spec else set()
    except exception.Invalid:
        return set()


def check_isolation(tree):
    name = 'realtime isolation'
    try:
        dedicated = hardware.get_cpu_dedicated_set() or set()
    except exception.Invalid:
        dedicated = set()  # reported by the CPU sets check
    if not dedicated:
        return Result(PASS, name, 'no [compute] cpu_dedicated_set: no CPU '
                      'to isolate')
    params = dict(tree.cmdline())
    gaps = []
    for param in ('isolcpus', 'nohz_full', 'rcu_nocbs'):
        missing = dedicated - _cmdline_cpus(params.get(param))
        if missing:
            gaps.append('%s lacks %s' % (param, _spec(missing)))
    if not gaps:
        return Result(PASS, name, 'isolcpus, nohz_full and rcu_nocbs cover '
                      'cpu_dedicated_set %s' % _spec(dedicated))
    spec = _spec(dedicated)
    return Result(
        WARN, name, 'cpu_dedicated_set %s is not isolated: %s (matters for '
        'realtime guests, hw:cpu_realtime)' % (spec, '; '.join(gaps)),
        'add isolcpus=%s nohz_full=%s rcu_nocbs=%s to the kernel command '
        'line %s' % (spec, spec, spec, GRUB))


# libvirt hands QEMU the kernel's /dev/userfaultfd (Linux 6.1 and later)
# since 10.1.0; QEMU opens it, before trying userfaultfd(2), since 8.0.0.
USERFAULTFD_DEVICE = {'libvirt': '10.1.0', 'QEMU': '8.0.0'}
USERFAULTFD_RISK = ('opens userfaultfd to every local user (and to a QEMU '
                    'a guest escaped into), a well-known kernel-exploit '
                    'primitive')


@dataclasses.dataclass
class Versions:
    """libvirt's and QEMU's versions, as libvirt's integers."""

    libvirt: int
    QEMU: int


def _no_userfaultfd_device(tree, versions):
    """Why QEMU cannot get /dev/userfaultfd from libvirt here (empty when
    it can)."""
    lacking = []
    if not tree.exists('dev/userfaultfd'):
        lacking.append('the kernel has no /dev/userfaultfd (Linux 6.1 and '
                       'later have it)')
    if versions is None:
        lacking.append('libvirt was not reached to tell its and QEMU\'s '
                       'versions')
        return lacking
    for name, minimum in USERFAULTFD_DEVICE.items():
        have = getattr(versions, name)
        if have < versionutils.convert_version_to_int(minimum):
            lacking.append('%s is %s, /dev/userfaultfd needs %s' % (
                name, _version(have), minimum))
    return lacking


def check_post_copy(tree, versions=None):
    """Post-copy needs userfaultfd in the destination's QEMU, which runs as
    an unprivileged user (libvirt-qemu). It gets it either through
    /dev/userfaultfd, which libvirt 10.1+ hands to QEMU 8.0+ alone, or
    through vm.unprivileged_userfaultfd = 1, which opens it to every local
    user. Without either, libvirt refuses every migration that asks for
    post-copy ("Postcopy is not supported"), not only those that switch
    to it. The sysctl is the operator's trade-off to make: a WARN with
    both ways, never a FAIL that pushes the weaker one.

    :param versions: Versions, or None when libvirt was not reached
    """
    name = 'post-copy'
    if not CONF.libvirt.live_migration_permit_post_copy:
        return Result(PASS, name, '[libvirt] live_migration_permit_post_copy '
                      'is off: nothing to check')
    allowed = tree.read('proc/sys/vm/unprivileged_userfaultfd')
    lacking = _no_userfaultfd_device(tree, versions)
    if not lacking:
        if allowed == '1':
            return Result(
                WARN, name, 'libvirt gives QEMU /dev/userfaultfd, yet '
                'vm.unprivileged_userfaultfd = 1 also ' + USERFAULTFD_RISK,
                'sysctl -w vm.unprivileged_userfaultfd=0 and keep it in '
                '/etc/sysctl.d/: post-copy does not need it here')
        return Result(PASS, name, 'libvirt gives QEMU /dev/userfaultfd; '
                      'vm.unprivileged_userfaultfd stays 0')
    if allowed is None:
        return Result(PASS, name, 'this kernel has no vm.unprivileged_'
                      'userfaultfd: userfaultfd is open to QEMU')
    device = ('give QEMU /dev/userfaultfd, which keeps vm.unprivileged_'
              'userfaultfd = 0: Linux 6.1, libvirt %s and QEMU %s or later '
              '(and /dev/userfaultfd in qemu.conf\'s cgroup_device_acl, if '
              'set)' % (USERFAULTFD_DEVICE['libvirt'],
                        USERFAULTFD_DEVICE['QEMU']))
    if allowed == '1':
        return Result(
            WARN, name, 'QEMU can use userfaultfd because vm.unprivileged_'
            'userfaultfd = 1, which %s; no /dev/userfaultfd instead: %s'
            % (USERFAULTFD_RISK, '; '.join(lacking)),
            device + ', then sysctl -w vm.unprivileged_userfaultfd=0')
    return Result(
        WARN, name, '[libvirt] live_migration_permit_post_copy is on but '
        'QEMU cannot use userfaultfd: vm.unprivileged_userfaultfd = 0 and '
        'no /dev/userfaultfd (%s); every live migration to this host fails '
        'with "Postcopy is not supported"' % '; '.join(lacking),
        'either %s; or sysctl -w vm.unprivileged_userfaultfd=1 (kept in '
        '/etc/sysctl.d/), which %s; or turn live_migration_permit_post_'
        'copy off' % (device, USERFAULTFD_RISK))


def check_migration_transport():
    """Live migration moves the guest's memory (and, for a block migration,
    its disks) in QEMU's own streams, encrypted only with Nova's
    ``live_migration_with_native_tls`` (``live_migration_tunnelled`` is
    refused by nova-kvmx); libvirtd's connection, from
    ``live_migration_scheme`` (default tcp) or ``live_migration_uri``,
    carries the control."""
    name = 'live migration'
    options = CONF.libvirt
    control = (options.live_migration_uri.split(':', 1)[0]
               if options.live_migration_uri else
               'qemu+%s' % (options.live_migration_scheme or 'tcp'))
    if options.live_migration_with_native_tls:
        detail = ('QEMU\'s migration streams use TLS ([libvirt] '
                  'live_migration_with_native_tls)')
        if control == 'qemu+tcp':
            detail += ('; libvirtd\'s own connection is qemu+tcp (no guest '
                       'data; live_migration_scheme = tls encrypts it too)')
        return Result(PASS, name, detail)
    return Result(
        WARN, name, 'guest memory, and the disks of block migrations, '
        'cross the network in cleartext: [libvirt] live_migration_with_'
        'native_tls is off (libvirtd\'s connection: %s)' % control,
        'set [libvirt] live_migration_with_native_tls = true on every '
        'compute host, with QEMU\'s TLS certificates in place on each '
        '(/etc/pki/qemu: ca-cert.pem, server-cert.pem, server-key.pem, '
        'client-cert.pem, client-key.pem; qemu.conf default_tls_x509_verify '
        '= 1), and live_migration_scheme = tls for libvirtd\'s connection')


def _sriov_result(spec, functions, by_address):
    matched = [f for f in functions if spec.match(f.dev_dict())]
    label = 'device_spec %s' % ', '.join(
        '%s=%s' % kv for kv in sorted(
            dict(vendor_id=spec.vendor_id, product_id=spec.product_id,
                 **spec.get_tags()).items()))
    if not matched:
        idle = ['%s (%d VFs possible)' % (f.address, f.total_vfs)
                for f in functions if f.total_vfs and not f.num_vfs]
        return Result(
            FAIL, 'SR-IOV/PCI', '%s matches no PCI device on this host' %
            label, ('enable the VFs of the PF: echo <n> > /sys/bus/pci/'
                    'devices/<PF>/sriov_numvfs (PFs with none: %s)'
                    % ', '.join(idle)) if idle else
            'check the vendor_id/product_id/address against lspci -nn -D')
    vfs = [f for f in matched if f.parent_addr]
    unbound = [f.address for f in matched if not f.driver]
    pfs = sorted({f.parent_addr for f in vfs})
    enabled = ', '.join('%s: %d of %d VFs' % (
        pf, by_address[pf].num_vfs, by_address[pf].total_vfs)
        for pf in pfs if pf in by_address)
    detail = '%s: %d device(s), %d of them VFs%s' % (
        label, len(matched), len(vfs), ' (%s)' % enabled if enabled else '')
    if unbound:
        return Result(WARN, 'SR-IOV/PCI', '%s; bound to no driver: %s' % (
            detail, ', '.join(unbound)), 'bind them (echo <addr> > '
            '/sys/bus/pci/drivers/<driver>/bind) or check the PF driver\'s '
            'sriov_drivers_autoprobe; SR-IOV ports need the VF driver')
    return Result(PASS, 'SR-IOV/PCI', detail + ', all bound to a driver')


def check_sriov(tree):
    try:
        specs = whitelist.Whitelist(CONF.pci.device_spec).specs
    except exception.NovaException as ex:
        return [Result(FAIL, 'SR-IOV/PCI', ex.format_message(),
                       'fix [pci] device_spec')]
    if not specs:
        return [Result(PASS, 'SR-IOV/PCI', 'no [pci] device_spec: no PCI '
                       'passthrough or SR-IOV configured')]
    functions = tree.pci_functions()
    by_address = {f.address: f for f in functions}
    return [_sriov_result(spec, functions, by_address) for spec in specs]


def _version(ver):
    return versionutils.convert_version_to_str(ver)


def _version_result(name, have, minimum, next_minimum):
    need = versionutils.convert_version_to_int(minimum)
    upcoming = versionutils.convert_version_to_int(next_minimum)
    if have < need:
        return Result(FAIL, name, '%s, Nova needs %s or newer' % (
            _version(have), _version(need)), 'upgrade %s' % name)
    if have < upcoming:
        return Result(WARN, name, '%s; Nova\'s next release needs %s' % (
            _version(have), _version(upcoming)), 'plan an upgrade of %s'
            % name)
    return Result(PASS, name, '%s (Nova needs %s)' % (
        _version(have), _version(need)))


def check_versions(uri):
    """libvirt's and QEMU's versions against Nova's, and virt_type against
    what libvirt offers.

    :returns: (results, Versions or None when libvirt was not reached)
    """
    try:
        host = hostdata.open_host(uri)
    except exception.NovaException as ex:
        # One line: libvirt's parse errors quote the document over three.
        return [Result(WARN, 'libvirt', '%s; versions not checked'
                       % ' '.join(ex.format_message().split()),
                       'start libvirtd (and virtlogd), or pass '
                       '--connection-uri')], None
    try:
        conn = host.get_connection()
        versions = Versions(conn.getLibVersion(), conn.getVersion())
        results = [
            _version_result('libvirt', versions.libvirt,
                            libvirt_driver.MIN_LIBVIRT_VERSION,
                            libvirt_driver.NEXT_MIN_LIBVIRT_VERSION),
            _version_result('QEMU', versions.QEMU,
                            libvirt_driver.MIN_QEMU_VERSION,
                            libvirt_driver.NEXT_MIN_QEMU_VERSION)]
        caps = hostdata.parse_capabilities(conn.getCapabilities())
        types = connection.supported_domain_types(caps, caps.host.cpu.arch)
        virt_type = _virt_type()
        results.append(Result(PASS, 'virt_type', '[libvirt] virt_type=%s is '
                              'offered by libvirt' % virt_type)
                       if virt_type in types else
                       Result(FAIL, 'virt_type', '[libvirt] virt_type=%s is '
                              'not offered by libvirt (it offers %s)' % (
                                  virt_type, ', '.join(sorted(types))
                                  or 'none'),
                              'load the kvm module, or set [libvirt] '
                              'virt_type = qemu'))
        return results, versions
    finally:
        host.close()


def _split_cores(tree, dedicated):
    """Cores whose threads are dedicated and also shared or left to the
    host: a pinned vCPU then shares its core with other work."""
    split = set()
    for cpu in dedicated:
        siblings = tree.thread_siblings(cpu)
        if siblings - dedicated:
            split.add(min(siblings))
    return split


def check_cpu_sets(tree):
    name = 'CPU sets'
    online = tree.online_cpus()
    try:
        sets = topology.cpu_sets(online)
    except exception.InvalidConfiguration as ex:
        return Result(FAIL, name, ex.format_message(),
                      'correct the option named above')
    detail = 'shared %s, dedicated %s (online %s)' % (
        _spec(sets.shared), _spec(sets.dedicated), _spec(online))
    if not sets.dedicated:
        return Result(WARN, name, detail + ': pinned flavors '
                      '(hw:cpu_policy=dedicated) cannot be placed here',
                      'set [compute] cpu_dedicated_set to the CPUs for '
                      'pinned guests and cpu_shared_set to the others, '
                      'leaving some to the host')
    if sets.shared | sets.dedicated == online:
        return Result(WARN, name, detail + ': every online CPU is given to '
                      'guests, none is left to the host\'s own work',
                      'leave at least one core (with its thread siblings) '
                      'out of both sets')
    split = _split_cores(tree, sets.dedicated)
    if split:
        return Result(WARN, name, detail + ': the cores of CPUs %s have '
                      'threads outside cpu_dedicated_set' % _spec(split),
                      'put whole cores (all thread siblings) into '
                      'cpu_dedicated_set')
    return Result(PASS, name, detail)


def run(root='/', uri='qemu:///system'):
    """All checks, in a stable order."""
    tree = systree.SysTree(root)
    versions_results, versions = check_versions(uri)
    return ([check_virtualization(tree), check_iommu(tree)] +
            check_hugepages(tree) +
            [check_isolation(tree)] +
            check_sriov(tree) +
            versions_results +
            [check_cpu_sets(tree), check_post_copy(tree, versions),
             check_migration_transport()])
