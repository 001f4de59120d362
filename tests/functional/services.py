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

"""Nova's in-process control plane for our driver, whichever libvirt it
talks to: the real libvirtd (base.RealLibvirtTestCase) or Nova's fake one
(fake_host.FakeLibvirtTestCase). Those bases add only their libvirt."""

import importlib
import os
import sqlite3
import sys
import time

import fixtures
from nova import context as nova_context
import nova.conf
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import fixtures as func_fixtures
from nova.tests.functional import integrated_helpers

from nova_kvmx import conf as kvmx_conf  # noqa: F401 (registers [kvmx])
from nova_kvmx.host import connection
from tests.unit import glance

CONF = nova.conf.CONF

# Seconds a test waits for a real guest to reach a state (TCG is slow and
# CI machines are shared); every wait has a deadline.
STATE_TIMEOUT = 120


class GlanceFixture(glance.VerifyingGlanceFixture):
    """Nova's fake Glance, keeping the data of an update as Glance does
    (Nova's fake drops it), so a server can boot from a snapshot, and
    checking signatures before a download as Nova's Glance client does."""

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        image = super().update(context, image_id, metadata,
                               purge_props=purge_props)
        if data is not None:
            self._imagedata[image_id] = data.read()
            image['size'] = len(self._imagedata[image_id])
        return image


class ClosedLibvirtHosts(fixtures.Fixture):
    """Nova's test services stop in a background thread that may not reach
    the driver's cleanup_host (or never start, when start-up fails) before
    the test's thread pools are torn down, which would wait forever for the
    libvirt Host's event thread. Close every Host the test created (close()
    is idempotent)."""

    def _setUp(self):
        hosts = []
        real_new_host = connection.new_host

        def new_host(*args, **kwargs):
            hosts.append(real_new_host(*args, **kwargs))
            return hosts[-1]

        self.useFixture(fixtures.MonkeyPatch(
            'nova_kvmx.host.connection.new_host', new_host))
        self.addCleanup(lambda: [host.close() for host in hosts])


class KeptOpenDatabases(fixtures.Fixture):
    """One idle connection held open on each of the test's SQLite files.

    In native threading mode Nova's test databases (and Placement's) are
    SQLite files in WAL mode opened through a NullPool, so every
    transaction opens and closes its own connection. When the last
    connection to a WAL database closes, SQLite checkpoints the WAL and
    resets it; a writer that took its read snapshot just then fails its
    first write with "database is locked" (SQLITE_BUSY_SNAPSHOT), at once,
    whatever the busy timeout and despite Nova's DatabaseWriteLock. Under
    load that fails a nova-compute request now and then. With one
    connection always open on the file, no transaction's close is the
    last one."""

    def _setUp(self):
        self.paths = []
        kept = []
        self.addCleanup(lambda: [conn.close() for conn in kept])
        # By module object: the package nova.tests.fixtures binds the name
        # "nova" to the nova package, not to its module nova.py.
        nova_db_fixtures = importlib.import_module('nova.tests.fixtures.nova')
        create = nova_db_fixtures._use_file_backed_sqlite_with_wal

        def create_and_keep_open(name):
            url, path = create(name)
            conn = sqlite3.connect(path, check_same_thread=False,
                                   isolation_level=None)
            # A first read opens the WAL index, which the connection then
            # holds; autocommit, so it keeps no snapshot to hold the WAL.
            conn.execute('SELECT count(*) FROM sqlite_master').fetchall()
            kept.append(conn)
            self.paths.append(path)
            return url, path

        # Placement's fixture imported the function by name.
        for module in (nova_db_fixtures, func_fixtures):
            self.useFixture(fixtures.MockPatchObject(
                module, '_use_file_backed_sqlite_with_wal',
                create_and_keep_open))


class NovaServicesMixin(integrated_helpers.InstanceHelperMixin):
    """For a nova.test.TestCase: API, conductor, scheduler, Placement and
    Glance/Neutron fakes, with nova-compute configured for our driver."""

    compute_host = 'compute1'

    def setUp(self):
        # Before nova.test.TestCase.setUp creates the databases.
        self.kept_databases = self.useFixture(KeptOpenDatabases())
        super().setUp()

    def start_nova(self, instances_path, virt_type):
        """Everything but nova-compute, which each test base starts on its
        own libvirt."""
        self.instances_path = instances_path
        self.flags(compute_driver='kvmx.KVMXDriver',
                   instances_path=instances_path)
        self.flags(virt_type=virt_type, group='libvirt')
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        # One host: a failed build must show its own fault, not a retry.
        self.flags(max_attempts=1, group='scheduler')
        # An RPC call still waiting when a failed test stops the services
        # would keep its worker thread, and so the test process, alive for
        # long_rpc_timeout (30 minutes by default).
        self.flags(long_rpc_timeout=120, rpc_response_timeout=60)
        # A stopping nova-compute runs its manager's graceful shutdown (our
        # cleanup_host, then shutdown_all_executors) in a thread. Nova's
        # tests wait 0 s for it, so under load it may end after the
        # ServiceFixture's patch of shutdown_all_executors is gone and shut
        # the process's thread pools for every later test of the worker:
        # wait for it instead.
        self.flags(manager_shutdown_timeout=60, graceful_shutdown_timeout=90)
        # The scheduler filters an NFV deployment enables.
        self.flags(enabled_filters=CONF.filter_scheduler.enabled_filters +
                   ['NUMATopologyFilter', 'PciPassthroughFilter'],
                   group='filter_scheduler')
        self.useFixture(ClosedLibvirtHosts())

        self.glance = self.useFixture(GlanceFixture(self))
        self.neutron = self.useFixture(nova_fixtures.NeutronFixture(self))
        self.placement = self.useFixture(func_fixtures.PlacementFixture()).api
        self.api_fixture = self.useFixture(
            nova_fixtures.OSAPIFixture(api_version='v2.1'))
        self.api = self.admin_api = self.api_fixture.admin_api
        self.api.microversion = 'latest'
        self.start_service('conductor')
        self.start_service('scheduler')
        self.ctxt = nova_context.get_admin_context()

    def create_flavor(self, name='kvmx.tiny', vcpus=1, ram=256, disk=1,
                      extra_specs=None):
        return self._create_flavor(name=name, vcpu=vcpus, memory_mb=ram,
                                   disk=disk, ephemeral=0,
                                   extra_spec=extra_specs)

    def claim(self, server):
        """The server's NUMA claim (pinning, cells, page size) as Nova
        stored it."""
        return objects.Instance.get_by_uuid(
            self.ctxt, server['id'],
            expected_attrs=['numa_topology']).numa_topology

    def wait_for_status(self, server, status, timeout=STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] == status and (
                    status != 'ERROR' or 'fault' in server):
                return server
            if server['status'] == 'ERROR' and 'fault' in server:
                self.fail('Server %s is ERROR, expected %s: %s' % (
                    server['id'], status, server['fault']))
            if time.monotonic() > deadline:
                self.fail('Server %s is %s (task %s) after %ds, expected %s'
                          % (server['id'], server['status'],
                             server.get('OS-EXT-STS:task_state'), timeout,
                             status))
            time.sleep(0.5)

    def wait_until_deleted(self, server, timeout=STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.get_server(server['id'])
            except Exception as ex:
                if getattr(ex, 'response', None) is not None and \
                        ex.response.status_code == 404:
                    return
                raise
            time.sleep(0.5)
        self.fail('Server %s not deleted after %ds' % (server['id'],
                                                       timeout))
