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

"""Tests against the all-in-one cloud of deploy/up: real, separate
OpenStack services, two nova-compute services on our driver.

They drive the cloud as a user does (the public APIs through
openstacksdk, with the credentials of deploy/'s clouds.yaml) and check
what a user or an operator would see on the hosts (the domain in each
host's libvirtd, the ports on each host's Open vSwitch, the instance
directories). Skipped unless the cloud is up (``deploy/up``).
"""

import json
import os
import subprocess
import sys
import time

import testtools

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), 'deploy'))

from cloud import hosts  # noqa: E402
from cloud import layout  # noqa: E402

# Every wait has a deadline: a boot under TCG on a loaded machine, a live
# migration with block copy.
BOOT_TIMEOUT = 300
MIGRATION_TIMEOUT = 300
GUEST_NET_MARKER = 'KVMX-GUEST-NET'


def cloud_is_up():
    return os.path.exists(layout.CLOUDS_YAML) and \
        os.path.exists(os.path.join(layout.PIDS, 'nova-api.pid'))


def host_uri(host):
    """The libvirt URI of ``host``'s libvirtd, as seen from this host."""
    if host.is_local:
        return 'qemu:///system'
    return 'qemu+unix:///system?socket=%s' % os.path.join(
        hosts.private_dir('/run/libvirt'), 'libvirt-sock')


def host_of(node):
    """The layout host of a hypervisor host name."""
    return layout.COMPUTE2 if node == layout.HOSTNAME2 else layout.COMPUTE1


class CloudTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if not cloud_is_up():
            self.skipTest('the all-in-one cloud is not up (deploy/up)')
        import openstack
        os.environ['OS_CLIENT_CONFIG_FILE'] = layout.CLOUDS_YAML
        self.admin = openstack.connect(cloud='kvmx-admin')
        self.demo = openstack.connect(cloud='kvmx-demo')
        self.image = self.demo.image.find_image('kvmx-guest',
                                                ignore_missing=False)
        self.network = self.demo.network.find_network(layout.PROVIDER_NET,
                                                      ignore_missing=False)

    def openstack(self, *args, cloud='kvmx-demo', output=True):
        """The ``openstack`` command of the cloud's virtualenv as a user
        runs it; its JSON output (``-f json``) when ``output``."""
        env = dict(os.environ, OS_CLOUD=cloud,
                   OS_CLIENT_CONFIG_FILE=layout.CLOUDS_YAML)
        out = subprocess.run(
            [os.path.join(layout.BIN, 'openstack')] + list(args) +
            (['-f', 'json'] if output else []), env=env, check=True,
            stdout=subprocess.PIPE, text=True,
            timeout=BOOT_TIMEOUT + 60).stdout
        return json.loads(out) if output else out

    # -- servers ------------------------------------------------------------

    def boot(self, flavor='kvmx.tiny', host=None, wait=True, **kwargs):
        """A server of the demo project on the provider network (on
        ``host``, a hypervisor host name, when given: admins only)."""
        cloud = self.demo
        if host:
            cloud = self.admin
            kwargs['availability_zone'] = 'nova:%s' % host
        server = cloud.compute.create_server(
            name=self.getUniqueString('kvmx-cloud-test'),
            image_id=self.image.id,
            flavor_id=cloud.compute.find_flavor(
                flavor, ignore_missing=False).id,
            networks=[{'uuid': self.network.id}], **kwargs)
        self.addCleanup(self.delete, server)
        if wait:
            server = self.wait_for_status(server, 'ACTIVE')
        return server

    def delete(self, server):
        self.admin.compute.delete_server(server, ignore_missing=True)
        self.admin.compute.wait_for_delete(server, wait=BOOT_TIMEOUT)

    def wait_for_server(self, server, done, what, timeout=BOOT_TIMEOUT):
        """The server, read through the API until ``done(server)``; fails
        with ``what`` was waited for after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.admin.compute.get_server(server.id)
            if done(server):
                return server
            if time.monotonic() > deadline:
                self.fail('server %s is %s (task %s, on %s) after %d s, '
                          'waiting for %s' % (
                              server.id, server.status, server.task_state,
                              server.compute_host, timeout, what))
            time.sleep(2)

    def wait_for_status(self, server, status, timeout=BOOT_TIMEOUT):
        def done(server):
            if server.status == 'ERROR' and status != 'ERROR':
                self.fail('server %s went to ERROR: %s' % (
                    server.id, server.fault))
            return server.status == status
        return self.wait_for_server(server, done, status, timeout)

    def console(self, server):
        # The admin's API reads every project's servers' consoles.
        return self.admin.compute.get_server_console_output(
            server)['output']

    def wait_for_console(self, server, text, timeout=BOOT_TIMEOUT):
        """The console output, once ``text`` is in it (read through the
        API)."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.console(server)
            if text in output:
                return output
            if time.monotonic() > deadline:
                self.fail('%r not in the console of %s after %d s:\n%s' % (
                    text, server.id, timeout, output[-3000:]))
            time.sleep(2)

    def fixed_ip(self, server):
        return [a['addr'] for a in server.addresses[layout.PROVIDER_NET]
                if a['version'] == 4][0]

    # -- what the hosts hold -------------------------------------------------

    def virsh(self, host, *args):
        return subprocess.run(
            ['virsh', '-c', host_uri(host)] + list(args), check=True,
            stdout=subprocess.PIPE, text=True, timeout=60).stdout

    def domains(self, host):
        return self.virsh(host, 'list', '--all', '--uuid').split()

    def domain_xml(self, host, server):
        return self.virsh(host, 'dumpxml', server.id)

    def ovs_ports(self, host):
        """The ports on ``host``'s integration bridge."""
        db = 'unix:%s/db.sock' % hosts.ovs_rundir(host)
        return subprocess.run(
            ['ovs-vsctl', '--db=' + db, 'list-ports', 'br-int'], check=True,
            stdout=subprocess.PIPE, text=True, timeout=60).stdout.split()

    def instance_dir(self, host, server):
        base = (layout.INSTANCES if host.is_local else
                os.path.join(host.state, 'instances'))
        return os.path.join(base, server.id)

    def pingable(self, address, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(['ping', '-c', '1', '-W', '2', address],
                              stdout=subprocess.DEVNULL).returncode == 0:
                return True
        return False
