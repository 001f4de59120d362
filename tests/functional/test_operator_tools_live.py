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

"""``nova-kvmx explain`` and ``host-check`` on this machine, as an
operator runs them (``python -m nova_kvmx.cmd``, in a process of their
own), against the running libvirtd and the real /proc and /sys.

The machine's verdicts are whatever they are (it has no IOMMU, for one);
what is checked is that every check runs and reports, that the exit
status follows the verdicts, and that what the commands say about the
host is what libvirt says.
"""

import json
import os
import re
import subprocess
import sys

import fixtures
import libvirt
from lxml import etree
from oslo_utils import versionutils
import testtools

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
URI = 'qemu:///system'
TIMEOUT = 120


class LiveCommandTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.conf = os.path.join(self.tmp, 'nova.conf')
        with open(self.conf, 'w') as f:
            f.write('[libvirt]\nconnection_uri = %s\n' % URI)
        try:
            self.conn = libvirt.openReadOnly(URI)
        except libvirt.libvirtError as ex:
            self.fail('libvirtd must be running for the functional tests: '
                      '%s' % ex)
        self.addCleanup(self.conn.close)

    def command(self, *args):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_kvmx.cmd', args[0],
             '--config-file', self.conf] + list(args[1:]),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        return proc

    def test_host_check(self):
        proc = self.command('host-check')

        lines = proc.stdout.splitlines()
        statuses = {}
        for line in lines:
            match = re.match(r'(PASS|WARN|FAIL)  ([^:]+): ', line)
            if match:
                statuses[match.group(2)] = match.group(1)
            else:
                self.assertTrue(line.startswith('      fix: '), line)
        self.assertEqual('', proc.stderr)
        self.assertEqual(1 if 'FAIL' in statuses.values() else 0,
                         proc.returncode, proc.stdout)
        self.assertLessEqual(
            {'virtualization', 'IOMMU', 'hugepages', 'realtime isolation',
             'SR-IOV/PCI', 'libvirt', 'QEMU', 'virt_type', 'CPU sets'},
            set(statuses))
        version = versionutils.convert_version_to_str(
            self.conn.getLibVersion())
        self.assertTrue(any(line.startswith(
            '%s  libvirt: %s' % (statuses['libvirt'], version))
            for line in lines), proc.stdout)

    def test_post_copy_advice_on_this_host(self):
        # This host's kernel has /dev/userfaultfd (and vm.unprivileged_
        # userfaultfd, whatever its value); its libvirt and QEMU decide
        # whether QEMU gets the device.
        with open(self.conf, 'a') as f:
            f.write('[libvirt]\nlive_migration_permit_post_copy = true\n')
        proc = self.command('host-check', '--format', 'json')

        self.assertEqual('', proc.stderr)
        found = {r['name']: r for r in json.loads(proc.stdout)}
        post_copy = found['post-copy']
        has_device = (os.path.exists('/dev/userfaultfd') and
                      self.conn.getLibVersion() >= 10001000 and
                      self.conn.getVersion() >= 8000000)
        if has_device:
            self.assertEqual('PASS', post_copy['status'], post_copy)
        else:
            # Never a FAIL pushing vm.unprivileged_userfaultfd = 1: both
            # ways, the sysctl with its risk.
            self.assertEqual('WARN', post_copy['status'], post_copy)
            self.assertIn('give QEMU /dev/userfaultfd', post_copy['fix'])
            self.assertIn('kernel-exploit primitive',
                          post_copy['detail'] + post_copy['fix'])
        self.assertEqual('WARN', found['live migration']['status'])
        self.assertIn('cleartext', found['live migration']['detail'])

    def test_explain_on_the_live_host(self):
        # The host as reported, without what runs on it (other workers'
        # and users' guests come and go on this libvirtd): usage is
        # test_explain_in_use's subject.
        proc = self.command('explain', '--vcpus', '1', '--ram', '256',
                            '--usage', 'none', '--format', 'json')

        self.assertEqual((0, ''), (proc.returncode, proc.stderr))
        result = json.loads(proc.stdout)
        self.assertTrue(result['fits'])
        self.assertEqual(URI, result['host']['source'])
        _count, online, _ = self.conn.getCPUMap()
        # No CPU sets configured: every online CPU is shared, offered
        # to Placement with Nova's initial ratio (4.0).
        self.assertEqual(sum(online) * 4, result['host']['inventory']['VCPU'])
        caps = etree.fromstring(self.conn.getCapabilities())
        self.assertEqual(len(caps.findall('host/topology/cells/cell')),
                         len(result['host']['cells']))

    def test_explain_counts_the_hosts_huge_pages(self):
        caps = etree.fromstring(self.conn.getCapabilities())
        cells = caps.findall('host/topology/cells/cell')
        pages = [int(cell.findtext("pages[@size='2048']") or 0)
                 for cell in cells]
        most = max(pages)
        proc = self.command(
            'explain', '--vcpus', '1', '--ram', str((most + 1) * 2),
            '--usage', 'none', '--extra-spec', 'hw:mem_page_size=2MB')

        self.assertEqual((1, ''), (proc.returncode, proc.stderr))
        self.assertIn('needs %d free 2M pages, has %d' % (most + 1, most),
                      proc.stdout)
        if most:
            proc = self.command(
                'explain', '--vcpus', '1', '--ram', str(most * 2),
                '--usage', 'none', '--extra-spec', 'hw:mem_page_size=2MB')
            self.assertEqual(0, proc.returncode, proc.stdout)
            self.assertIn('%d x 2M' % most, proc.stdout)
