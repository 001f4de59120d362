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

"""``nova-kvmx host-check`` on fake /proc, /sys and /dev trees.

Each tree is built in a temporary directory in the layout the kernel
uses (PCI functions as directories with ``physfn`` and ``driver``
symlinks, hugepages per NUMA node, ...), starting from a tuned NFV host
(8 CPUs without SMT on 2 NUMA nodes, 1G pages, an X710 PF with 4 VFs),
then broken one way per test. libvirt is not reachable from unit tests:
the version checks WARN; tests/functional/test_host_check_live.py runs
them against this machine's libvirtd.
"""

import io
import json
import os

import fixtures
import nova.conf
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.cmd import host_check
from nova_kvmx.cmd import main
from nova_kvmx.cmd import systree

CONF = nova.conf.CONF
PF = '0000:81:00.0'
VFS = ['0000:81:02.%d' % i for i in range(4)]
VF_SPEC = '{"vendor_id": "8086", "product_id": "154c"}'
CMDLINE = ('BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on iommu=pt '
           'default_hugepagesz=1G hugepagesz=1G hugepages=8 '
           'isolcpus=managed_irq,domain,2-7 nohz_full=2-7 rcu_nocbs=2-7')


class FakeHostTree(fixtures.Fixture):
    """A host's /proc, /sys and /dev under a temporary root."""

    def _setUp(self):
        self.root = self.useFixture(fixtures.TempDir()).path

    def write(self, relative, content=''):
        path = os.path.join(self.root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(content)

    def link(self, relative, target):
        path = os.path.join(self.root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)

    def remove(self, relative):
        os.unlink(os.path.join(self.root, relative))

    def tuned_nfv_host(self):
        self.write('proc/cpuinfo', ''.join(
            'processor\t: %d\nflags\t\t: fpu vme de pse msr vmx ept\n\n' % c
            for c in range(8)))
        self.write('proc/cmdline', CMDLINE + '\n')
        self.write('proc/mounts', 'sysfs /sys sysfs rw 0 0\nhugetlbfs '
                   '/dev/hugepages hugetlbfs rw,relatime,pagesize=1024M 0 0'
                   '\n')
        self.write('dev/kvm')
        for group in range(12):
            self.write('sys/kernel/iommu_groups/%d/type' % group, 'DMA\n')
        self.write('sys/devices/system/cpu/online', '0-7\n')
        for cpu in range(8):
            self.write('sys/devices/system/cpu/cpu%d/topology/'
                       'thread_siblings_list' % cpu, '%d\n' % cpu)
        for node in (0, 1):
            self.node(node, pages_1g=4)
        self.pci_function(PF, '0x1572', driver='i40e', total_vfs=64,
                          num_vfs=4)
        for vf in VFS:
            self.pci_function(vf, '0x154c', driver='iavf', physfn=PF)

    def node(self, node, pages_1g=0, free_1g=None, pages_2m=0):
        base = 'sys/devices/system/node/node%d' % node
        self.write(base + '/meminfo', 'Node %d MemTotal:       16384000 kB\n'
                   'Node %d MemFree:        8000000 kB\n' % (node, node))
        for size, count, free in ((1048576, pages_1g, free_1g),
                                  (2048, pages_2m, None)):
            pages = '%s/hugepages/hugepages-%dkB/' % (base, size)
            self.write(pages + 'nr_hugepages', '%d\n' % count)
            self.write(pages + 'free_hugepages', '%d\n' % (
                count if free is None else free))

    def pci_function(self, address, device, driver=None, physfn=None,
                     total_vfs=None, num_vfs=None):
        # As the kernel lays it out: the function's directory under
        # /sys/devices, a symlink to it in /sys/bus/pci/devices.
        real = 'sys/devices/pci0000:80/0000:80:03.0/%s' % address
        self.write(real + '/vendor', '0x8086\n')
        self.write(real + '/device', device + '\n')
        if driver:
            self.link(real + '/driver', '../../../../bus/pci/drivers/%s'
                      % driver)
        if physfn:
            self.link(real + '/physfn', '../%s' % physfn)
        if total_vfs is not None:
            self.write(real + '/sriov_totalvfs', '%d\n' % total_vfs)
            self.write(real + '/sriov_numvfs', '%d\n' % num_vfs)
        self.link('sys/bus/pci/devices/%s' % address,
                  '../../../devices/pci0000:80/0000:80:03.0/%s' % address)


class HostCheckTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.useFixture(fixtures.FakeLogger())
        self.tree = self.useFixture(FakeHostTree())
        self.tree.tuned_nfv_host()
        self.nfv_options()
        self.unreachable = 'qemu+unix:///system?socket=%s/nope' % (
            self.tree.root)

    def nfv_options(self, **compute):
        self.conf.config(cpu_shared_set='1', cpu_dedicated_set='2-7',
                         group='compute')
        self.conf.config(group='compute', **compute)
        self.conf.config(device_spec=[VF_SPEC], group='pci')
        self.conf.config(reserved_huge_pages=['node:0,size:1GB,count:1'])
        self.conf.config(live_migration_with_native_tls=True,
                         group='libvirt')

    def results(self):
        return host_check.run(self.tree.root, self.unreachable)

    def by_name(self):
        found = {}
        for result in self.results():
            found.setdefault(result.name, []).append(result)
        return found

    def assertResult(self, name, status, *fragments):
        [result] = self.by_name()[name]
        self.assertEqual(status, result.status, result)
        for fragment in fragments:
            self.assertIn(fragment, result.detail + ' | ' + result.fix)
        return result


class TunedHostTest(HostCheckTestCase):

    def test_everything_passes(self):
        statuses = {(r.name, r.status) for r in self.results()}
        self.assertEqual({
            ('virtualization', 'PASS'), ('IOMMU', 'PASS'),
            ('hugepages', 'PASS'), ('realtime isolation', 'PASS'),
            ('SR-IOV/PCI', 'PASS'), ('CPU sets', 'PASS'),
            ('post-copy', 'PASS'), ('live migration', 'PASS'),
            # No libvirt in unit tests.
            ('libvirt', 'WARN')}, statuses)

    def test_details(self):
        self.assertResult('virtualization', 'PASS', 'CPU flag vmx',
                          '/dev/kvm present')
        self.assertResult('IOMMU', 'PASS', '12 IOMMU groups',
                          'intel_iommu=on iommu=pt')
        self.assertResult('hugepages', 'PASS',
                          'node 0: 2M 0 (free 0, reserved 0), 1G 4 (free 4, '
                          'reserved 1); node 1: 2M 0 (free 0, reserved 0), '
                          '1G 4 (free 4, reserved 0)')
        self.assertResult('SR-IOV/PCI', 'PASS', '4 device(s), 4 of them VFs',
                          '0000:81:00.0: 4 of 64 VFs', 'all bound')
        self.assertResult('CPU sets', 'PASS',
                          'shared 1, dedicated 2-7 (online 0-7)')
        self.assertResult('libvirt', 'WARN', 'Cannot connect to libvirt',
                          'versions not checked', 'start libvirtd')

    def test_command_passes_with_json(self):
        out, err = io.StringIO(), io.StringIO()
        conf = os.path.join(self.tree.root, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[compute]\ncpu_shared_set = 1\ncpu_dedicated_set = 2-7\n'
                    '[pci]\ndevice_spec = %s\n' % VF_SPEC)
        status = main.main(['host-check', '--root', self.tree.root,
                            '--config-file', conf, '--format', 'json',
                            '--connection-uri', self.unreachable],
                           out=out, err=err)
        self.assertEqual((0, ''), (status, err.getvalue()))
        results = json.loads(out.getvalue())
        self.assertEqual({'PASS', 'WARN'}, {r['status'] for r in results})
        self.assertEqual({'status', 'name', 'detail', 'fix'},
                         set(results[0]))


class BrokenHostTest(HostCheckTestCase):

    def test_no_virtualization(self):
        self.tree.write('proc/cpuinfo', 'processor\t: 0\nflags\t\t: fpu\n')
        self.tree.remove('dev/kvm')
        self.assertResult('virtualization', 'FAIL', 'no vmx/svm CPU flag',
                          '/dev/kvm is missing', 'modprobe kvm_intel')

    def test_no_kvm_is_fine_for_emulation(self):
        self.conf.config(virt_type='qemu', group='kvmx')
        self.tree.remove('dev/kvm')
        self.assertResult('virtualization', 'WARN',
                          '[libvirt] virt_type=qemu does not need it')

    def test_kvm_without_cpu_flags(self):
        self.tree.write('proc/cpuinfo', 'processor\t: 0\nflags\t\t: fpu\n')
        self.assertResult('virtualization', 'WARN', 'nested or paravirtual')

    def test_no_iommu_with_passthrough_configured(self):
        self.tree.write('proc/cmdline', 'ro quiet\n')
        for group in range(12):
            self.tree.remove('sys/kernel/iommu_groups/%d/type' % group)
            os.rmdir(os.path.join(self.tree.root,
                                  'sys/kernel/iommu_groups/%d' % group))
        self.assertResult('IOMMU', 'FAIL', 'no IOMMU groups',
                          'kernel args: none', 'intel_iommu=on iommu=pt')
        self.conf.config(device_spec=[], group='pci')
        self.assertResult('IOMMU', 'WARN', 'no IOMMU groups')

    def test_no_hugepages(self):
        for node in (0, 1):
            self.tree.node(node)
        self.conf.config(reserved_huge_pages=[])
        self.assertResult('hugepages', 'WARN', 'no huge pages for guests',
                          'hugepages=<n>')

    def test_all_hugepages_reserved(self):
        self.conf.config(reserved_huge_pages=[
            'node:0,size:1GB,count:4', 'node:1,size:1048576,count:4'])
        self.assertResult('hugepages', 'WARN', 'no huge pages for guests',
                          '1G 4 (free 4, reserved 4)')

    def test_reservation_larger_than_the_node(self):
        self.conf.config(reserved_huge_pages=['node:1,size:1GB,count:6'])
        self.assertResult('hugepages', 'FAIL', "'reserved_huge_pages' "
                          'reserves 6 pages of 1048576 KiB on NUMA node 1, '
                          'which has 4', 'lower reserved_huge_pages')

    def test_reservation_for_a_missing_node(self):
        self.conf.config(reserved_huge_pages=['node:2,size:2MB,count:1'])
        self.assertResult('hugepages', 'FAIL', 'names NUMA node 2, which '
                          'this host does not have')

    def test_hugepages_without_hugetlbfs(self):
        self.tree.write('proc/mounts', 'sysfs /sys sysfs rw 0 0\n')
        self.assertResult('hugetlbfs', 'FAIL', 'no hugetlbfs is mounted',
                          'mount -t hugetlbfs hugetlbfs /dev/hugepages')

    def test_dedicated_cpus_not_isolated(self):
        self.tree.write('proc/cmdline', 'ro isolcpus=2-5 nohz_full=2-7\n')
        self.assertResult('realtime isolation', 'WARN',
                          'cpu_dedicated_set 2-7 is not isolated',
                          'isolcpus lacks 6-7', 'rcu_nocbs lacks 2-7',
                          'isolcpus=2-7 nohz_full=2-7 rcu_nocbs=2-7')

    def test_device_spec_without_vfs(self):
        # The PF's VFs were never enabled (sriov_numvfs = 0).
        for vf in VFS:
            self.tree.remove('sys/bus/pci/devices/%s' % vf)
        self.tree.write('sys/devices/pci0000:80/0000:80:03.0/%s/'
                        'sriov_numvfs' % PF, '0\n')
        self.assertResult('SR-IOV/PCI', 'FAIL',
                          'product_id=154c, vendor_id=8086 matches no PCI '
                          'device', '/sys/bus/pci/devices/<PF>/sriov_numvfs',
                          '0000:81:00.0 (64 VFs possible)')

    def test_unbound_vfs(self):
        for vf in VFS[2:]:
            self.tree.remove('sys/devices/pci0000:80/0000:80:03.0/%s/driver'
                             % vf)
        self.assertResult('SR-IOV/PCI', 'WARN', 'bound to no driver: '
                          '0000:81:02.2, 0000:81:02.3')

    def test_bad_device_spec(self):
        self.conf.config(device_spec=['{"vendor_id": "xyz"}'], group='pci')
        self.assertResult('SR-IOV/PCI', 'FAIL', 'fix [pci] device_spec')

    def test_no_device_spec(self):
        self.conf.config(device_spec=[], group='pci')
        self.assertResult('SR-IOV/PCI', 'PASS', 'no [pci] device_spec')

    def test_dedicated_set_names_offline_cpus(self):
        self.tree.write('sys/devices/system/cpu/online', '0-5\n')
        self.assertResult('CPU sets', 'FAIL', "'[compute] cpu_dedicated_set' "
                          'names CPUs 6-7 that are not online')

    def test_overlapping_sets(self):
        self.nfv_options(cpu_shared_set='0-2')
        self.assertResult('CPU sets', 'FAIL', 'both contain CPUs 2')

    def test_no_dedicated_set(self):
        self.nfv_options(cpu_dedicated_set=None, cpu_shared_set=None)
        self.assertResult('CPU sets', 'WARN', 'pinned flavors')
        self.assertResult('realtime isolation', 'PASS', 'no CPU to isolate')

    def test_nothing_left_for_the_host(self):
        self.nfv_options(cpu_shared_set='0-1')
        self.assertResult('CPU sets', 'WARN', 'none is left to the host')

    def test_dedicated_cores_shared_with_other_work(self):
        # SMT: 2 and 6 are one core, as are 3 and 7; 6 is shared.
        for a, b in ((2, 6), (3, 7)):
            for cpu in (a, b):
                self.tree.write('sys/devices/system/cpu/cpu%d/topology/'
                                'thread_siblings_list' % cpu, '%d,%d\n'
                                % (a, b))
        self.nfv_options(cpu_shared_set='1,6', cpu_dedicated_set='2-5,7')
        self.assertResult('CPU sets', 'WARN', 'the cores of CPUs 2 have '
                          'threads outside cpu_dedicated_set')

    def test_post_copy_without_userfaultfd(self):
        self.assertResult('post-copy', 'PASS', 'is off')
        self.conf.config(live_migration_permit_post_copy=True,
                         group='libvirt')
        self.assertResult('post-copy', 'PASS', 'no vm.unprivileged_')
        # Debian 12: Linux 6.1 has /dev/userfaultfd, libvirt 9.0 does not
        # hand it to QEMU (here libvirt is not even reached).
        self.tree.write('dev/userfaultfd')
        self.tree.write('proc/sys/vm/unprivileged_userfaultfd', '0\n')
        result = self.assertResult(
            'post-copy', 'WARN', 'Postcopy is not supported',
            'libvirt was not reached',
            # Both ways, the sysctl with its risk.
            'give QEMU /dev/userfaultfd, which keeps vm.unprivileged_'
            'userfaultfd = 0: Linux 6.1, libvirt 10.1.0 and QEMU 8.0.0',
            'sysctl -w vm.unprivileged_userfaultfd=1 (kept in '
            '/etc/sysctl.d/), which opens userfaultfd to every local user',
            'kernel-exploit primitive',
            'turn live_migration_permit_post_copy off')
        self.assertLess(result.fix.index('/dev/userfaultfd'),
                        result.fix.index('sysctl'))
        self.tree.write('proc/sys/vm/unprivileged_userfaultfd', '1\n')
        self.assertResult('post-copy', 'WARN', 'vm.unprivileged_userfaultfd '
                          '= 1, which opens userfaultfd to every local user',
                          'then sysctl -w vm.unprivileged_userfaultfd=0')

    def post_copy(self, libvirt, qemu):
        self.conf.config(live_migration_permit_post_copy=True,
                         group='libvirt')
        return host_check.check_post_copy(
            systree.SysTree(self.tree.root),
            host_check.Versions(libvirt=libvirt, QEMU=qemu))

    def test_post_copy_through_dev_userfaultfd(self):
        self.tree.write('proc/sys/vm/unprivileged_userfaultfd', '0\n')
        self.tree.write('dev/userfaultfd')
        self.assertEqual(('PASS', 'libvirt gives QEMU /dev/userfaultfd; '
                          'vm.unprivileged_userfaultfd stays 0'),
                         (self.post_copy(10001000, 8000000).status,
                          self.post_copy(10001000, 8000000).detail))
        self.tree.write('proc/sys/vm/unprivileged_userfaultfd', '1\n')
        result = self.post_copy(10001000, 8002000)
        self.assertEqual('WARN', result.status)
        self.assertIn('also opens userfaultfd to every local user',
                      result.detail)
        self.assertIn('sysctl -w vm.unprivileged_userfaultfd=0', result.fix)

    def test_post_copy_without_what_dev_userfaultfd_needs(self):
        self.tree.write('proc/sys/vm/unprivileged_userfaultfd', '0\n')
        result = self.post_copy(9000000, 7002000)
        self.assertEqual('WARN', result.status)
        for lacking in ('the kernel has no /dev/userfaultfd',
                        'libvirt is 9.0.0, /dev/userfaultfd needs 10.1.0',
                        'QEMU is 7.2.0, /dev/userfaultfd needs 8.0.0'):
            self.assertIn(lacking, result.detail)
        self.tree.write('dev/userfaultfd')
        result = self.post_copy(10001000, 7002000)
        self.assertEqual('WARN', result.status)
        self.assertNotIn('libvirt is', result.detail)
        self.assertIn('QEMU is 7.2.0', result.detail)

    def test_live_migration_in_cleartext(self):
        self.conf.config(live_migration_with_native_tls=False,
                         group='libvirt')
        self.assertResult(
            'live migration', 'WARN', 'cross the network in cleartext',
            'live_migration_with_native_tls is off', 'qemu+tcp',
            'set [libvirt] live_migration_with_native_tls = true',
            '/etc/pki/qemu', 'live_migration_scheme = tls')
        self.conf.config(live_migration_scheme='ssh', group='libvirt')
        self.assertResult('live migration', 'WARN', 'in cleartext',
                          'connection: qemu+ssh')
        self.conf.config(live_migration_uri='qemu+tls://%s/system',
                         group='libvirt')
        self.assertResult('live migration', 'WARN', 'in cleartext',
                          'connection: qemu+tls')

    def test_live_migration_with_native_tls(self):
        self.assertResult('live migration', 'PASS', 'streams use TLS',
                          'own connection is qemu+tcp')
        self.conf.config(live_migration_scheme='tls', group='libvirt')
        result = self.assertResult('live migration', 'PASS')
        self.assertEqual('QEMU\'s migration streams use TLS ([libvirt] '
                         'live_migration_with_native_tls)', result.detail)

    def test_command_fails(self):
        self.tree.remove('dev/kvm')
        out, err = io.StringIO(), io.StringIO()
        conf = os.path.join(self.tree.root, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[compute]\ncpu_dedicated_set = 2-7\n')
        status = main.main(['host-check', '--root', self.tree.root,
                            '--config-file', conf,
                            '--connection-uri', self.unreachable],
                           out=out, err=err)
        self.assertEqual(1, status)
        lines = out.getvalue().splitlines()
        self.assertIn('FAIL  virtualization: CPU flag vmx; /dev/kvm is '
                      'missing', lines)
        fix = lines[lines.index('FAIL  virtualization: CPU flag vmx; '
                                '/dev/kvm is missing') + 1]
        self.assertTrue(fix.startswith('      fix: enable VT-x/AMD-V'), fix)


class SysTreeTest(testtools.TestCase):

    def test_cmdline_stops_at_init_arguments(self):
        tree = self.useFixture(FakeHostTree())
        tree.write('proc/cmdline', 'ro hugepagesz=1G hugepages=4 '
                   'hugepagesz=2M hugepages=512 quiet -- single\n')
        self.assertEqual(
            [('ro', None), ('hugepagesz', '1G'), ('hugepages', '4'),
             ('hugepagesz', '2M'), ('hugepages', '512'), ('quiet', None)],
            systree.SysTree(tree.root).cmdline())

    def test_missing_files_read_as_absent(self):
        tree = systree.SysTree(self.useFixture(fixtures.TempDir()).path)
        self.assertEqual(([], set(), set(), []), (
            tree.cmdline(), tree.cpu_flags(), tree.online_cpus(),
            tree.pci_functions()))
