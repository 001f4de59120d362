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

"""The test databases stay open for the whole test (services.py,
KeptOpenDatabases), so SQLite never resets their WAL under a writer."""

import os

from nova import objects

from tests.functional import fake_host


class KeptOpenDatabasesTest(fake_host.FakeLibvirtTestCase):

    def test_every_database_keeps_its_wal_through_a_boot(self):
        files = ' '.join(os.path.basename(path)
                         for path in self.kept_databases.paths)
        # Nova's API database, each cell's, and Placement's.
        cells = objects.CellMappingList.get_all(self.ctxt)
        self.assertEqual(2, len(cells))
        for name in ['api', 'placement'] + [
                cell.database_connection for cell in cells]:
            self.assertIn('nova-test-%s-' % name, files)

        self.start_compute()
        flavor = self.create_flavor()
        server = self._create_server(
            flavor_id=flavor, networks='none', expected_state='ACTIVE')
        self.assertEqual('ACTIVE', server['status'])
        # Every transaction of the boot opened and closed its own
        # connection; none was the last, so no WAL was checkpointed away.
        for path in self.kept_databases.paths:
            self.assertTrue(os.path.exists(path + '-wal'), path)
