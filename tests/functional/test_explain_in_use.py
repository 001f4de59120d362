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

"""``nova-kvmx explain`` on this host while a pinned guest runs on it.

Through Nova's API a pinned guest backed by 2 MiB pages boots on the real
libvirtd (CPU 1 is the host's only dedicated CPU, CPU 0 shared). explain,
run as an operator runs it (a process of its own, the node's nova.conf),
is then asked about a second server. It must count the first guest's
pinned CPU and huge pages, both where Nova keeps them (the test's Nova
cell database, as on a node whose nova.conf has [database] connection)
and, without the database, from the guest's libvirt domain -- and agree
with Nova's claim of the first guest.

The libvirtd is shared (other test workers, other users of this machine
may run guests on it): from libvirt's domains every domain counts, so
those checks are about this test's guest being counted, not about the
host's totals.
"""

import json
import os
import subprocess
import sys

from lxml import etree
from nova import context as nova_context
from nova.db.main import api as db_api
from nova import objects

from tests.functional import base
from tests.functional import unprivileged

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PINNED = ['--extra-spec', 'hw:cpu_policy=dedicated']
PAGES_2M = ['--extra-spec', 'hw:mem_page_size=2MB']


class ExplainHostInUseTest(base.RealLibvirtTestCase):

    PINNED_HOST = base.ONE_PINNED_CPU

    def cell_database_url(self):
        """The URL of the cell database the compute node's record is in."""
        [cell] = [c for c in objects.CellMappingList.get_all(self.ctxt)
                  if not c.is_cell0()]
        with nova_context.target_cell(self.ctxt, cell) as cctxt:
            engine = db_api.get_engine(context=cctxt)
        return engine.url.render_as_string(hide_password=False)

    def nova_conf(self, database=None):
        path = os.path.join(self.instances_path, 'explain-nova.conf')
        shared, dedicated = self.PINNED_HOST
        with open(path, 'w') as f:
            f.write('[DEFAULT]\nhost = %s\n' % self.compute_host)
            f.write('[libvirt]\nconnection_uri = qemu:///system\n')
            f.write('[compute]\ncpu_shared_set = %s\ncpu_dedicated_set = '
                    '%s\n' % (shared, dedicated))
            if database:
                f.write('[database]\nconnection = %s\n' % database)
        return path

    def explain(self, conf, *args):
        # The operator's command, run as root (with sudo) beside
        # nova-compute, which runs as nova.
        proc = unprivileged.as_root(
            subprocess.run,
            [sys.executable, '-m', 'nova_kvmx.cmd', 'explain',
             '--config-file', conf, '--format', 'json'] + list(args),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        self.assertEqual('', proc.stderr)
        self.assertIn(proc.returncode, (0, 1), proc.stdout)
        return proc.returncode, json.loads(proc.stdout)

    def total_2m_pages(self):
        caps = etree.fromstring(self.libvirt().getCapabilities())
        return int(caps.findtext(
            "host/topology/cells/cell[@id='0']/pages[@size='2048']") or 0)

    def test_a_second_guest_with_the_first_counted(self):
        flavor_id = self.create_pinned_flavor(
            name='kvmx.pinned.2m', vcpus=1, ram=256, page_size='2MB')
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        claim = self.claim(server)
        self.assertEqual({0: 1}, claim.cells[0].cpu_pinning)
        domain = self.domain(server).name()
        total = self.total_2m_pages()

        # Where Nova keeps the usage: the compute node record.
        conf = self.nova_conf(database=self.cell_database_url())
        status, result = self.explain(
            conf, '--vcpus', '1', '--ram', '256', *PINNED, *PAGES_2M)
        self.assertEqual(1, status)
        self.assertIn('Nova\'s database at sqlite:', result['usage']['source'])
        [inst] = result['usage']['instances']
        self.assertEqual((server['name'], server['id']),
                         (inst['name'], inst['uuid']))
        self.assertEqual([{'host_cell': 0, 'memory_mb': 256,
                           'page_size': '2M', 'pinned': {'0': 1}}],
                         inst['cells'])
        [cell] = result['host']['cells']
        self.assertEqual(('1', 128, total - 128), (
            cell['pinned_cpus'], cell['used_pages']['2M'],
            cell['free_pages']['2M']))
        self.assertIn('Placement: PCPU: needs 1, 0 free of 1 (1 used by 1 '
                      'instance: %s (1))' % server['name'], result['reasons'])
        self.assertIn('cell 0: guest node 0: needs 1 free dedicated CPUs, '
                      'has 0 (1 pinned by 1 instance: %s (1))'
                      % server['name'], result['reasons'])

        # A guest of the shared CPU fits in the pages left, not one more.
        numa1 = ['--extra-spec', 'hw:numa_nodes=1']
        free = total - 128
        if free:
            status, result = self.explain(
                conf, '--vcpus', '1', '--ram', str(free * 2), *numa1,
                *PAGES_2M)
            self.assertEqual(0, status, result['reasons'])
        status, result = self.explain(
            conf, '--vcpus', '1', '--ram', str((free + 1) * 2), *numa1,
            *PAGES_2M)
        self.assertEqual(1, status)
        self.assertIn('cell 0: guest node 0: needs %d free 2M pages, has %d '
                      '(128 used by 1 instance: %s (128))' % (
                          free + 1, free, server['name']),
                      result['reasons'])

        # Without the database: read back from the libvirt domains.
        status, result = self.explain(
            self.nova_conf(), '--vcpus', '1', '--ram', '256', *PINNED,
            *PAGES_2M)
        self.assertEqual(1, status)
        self.assertTrue(result['usage']['source'].startswith(
            'libvirt domains at qemu:///system'))
        mine = [i for i in result['usage']['instances']
                if i['uuid'] == server['id']]
        self.assertEqual([{'host_cell': 0, 'memory_mb': 256,
                           'page_size': '2M', 'pinned': {'0': 1}}],
                         [c for i in mine for c in i['cells']])
        self.assertEqual('%s [%s]' % (server['name'], domain),
                         mine[0]['name'])
        [cell] = result['host']['cells']
        self.assertIn(1, [int(c) for c in cell['pinned_cpus'].split(',')
                          if c.isdigit()])
        self.assertGreaterEqual(cell['used_pages']['2M'], 128)
        why = ' '.join(result['reasons'])
        self.assertIn('needs 1 free dedicated CPUs, has 0 (1 pinned by', why)
        self.assertIn('%s [%s] (1)' % (server['name'], domain), why)
