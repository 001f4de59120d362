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

"""The cloud's smoke: what CI runs against deploy/up on every change.

A pinned hugepage server booted with ``openstack server create``, reached
on its port; a live migration and a cold migration between the two
computes; nova-compute as the unprivileged nova user; Neutron's
``network-vif-plugged`` event withheld; RabbitMQ restarted under a boot.
"""

import grp
import os
import pwd
import signal
import subprocess

from lxml import etree

from tests.cloud import base

from cloud import base as deploy_base  # noqa: I100 (deploy/, see base)
from cloud import layout
from cloud import procs

# QEMU's user on Debian (qemu.conf's default there).
QEMU_USER = 'libvirt-qemu'


def proc_status(pid):
    """{field: [values]} of /proc/PID/status."""
    with open('/proc/%d/status' % pid) as f:
        return {name: values.split() for name, _, values in
                (line.partition(':') for line in f)}


def proc_cmdline(pid):
    """The arguments of process ``pid`` (none once it is gone)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().split(b'\0')
    except OSError:
        return []


def file_owners(directory):
    """{name: owner} of the files in ``directory``."""
    return {name: pwd.getpwuid(os.stat(os.path.join(
        directory, name)).st_uid).pw_name for name in os.listdir(directory)
        if os.path.isfile(os.path.join(directory, name))}


class SmokeTest(base.CloudTestCase):

    def test_pinned_hugepage_server_from_the_cli(self):
        """openstack server create --flavor pinned.hugepage: ACTIVE, the
        guest booted (its console marker read through the API), took its
        DHCP lease on its OVS port on the first boot, answers a ping, and
        libvirt holds the claimed pin and pages."""
        created = self.openstack(
            'server', 'create', '--flavor', 'pinned.hugepage', '--image',
            'kvmx-guest', '--network', layout.PROVIDER_NET, '--wait',
            self.getUniqueString('kvmx-smoke'))
        server = self.admin.compute.get_server(created['id'])
        self.addCleanup(self.delete, server)
        self.assertEqual('ACTIVE', server.status)

        address = self.fixed_ip(server)
        self.wait_for_console(server, 'KVMX-GUEST-BOOTED')
        self.wait_for_console(
            server, '%s eth0 %s' % (base.GUEST_NET_MARKER, address))
        self.assertTrue(self.pingable(address),
                        'no answer from %s' % address)

        host = base.host_of(server.compute_host)
        xml = etree.fromstring(self.domain_xml(host, server).encode())
        self.assertEqual(['1'], xml.xpath('//cputune/vcpupin/@cpuset'))
        self.assertEqual(['2048'],
                         xml.xpath('//memoryBacking/hugepages/page/@size'))
        tap = xml.xpath('//devices/interface/target/@dev')[0]
        self.assertIn(tap, self.ovs_ports(host))

    def test_live_migration_between_the_computes(self):
        server = self.boot()
        source = server.compute_host
        address = self.fixed_ip(server)
        self.wait_for_console(server, base.GUEST_NET_MARKER)

        self.admin.compute.live_migrate_server(server, host=None,
                                               block_migration=True)
        server = self.wait_for_host_change(server, source)
        self.wait_for_status(server, 'ACTIVE')

        self.assertNotIn(server.id, self.domains(base.host_of(source)))
        dest = base.host_of(server.compute_host)
        self.assertIn(server.id, self.domains(dest))
        self.assertTrue(self.pingable(address),
                        'no answer from %s after the migration' % address)
        # The console log is the destination's: it goes on from there.
        self.console(server)

    def wait_for_host_change(self, server, source):
        def done(server):
            if server.task_state is None and self.migration_failed(server):
                self.fail('live migration of %s failed' % server.id)
            return server.compute_host != source and \
                server.task_state is None
        return self.wait_for_server(server, done, 'a move off %s' % source,
                                    base.MIGRATION_TIMEOUT)

    def migration_failed(self, server):
        return any(m.status in ('error', 'failed') for m in
                   self.admin.compute.migrations(instance_uuid=server.id))

    def test_cold_migration_between_the_computes(self):
        """A cold migration confirmed: the disks were copied to the other
        host by nova-compute (the nova user's ssh and scp), the server
        runs there and answers a ping, nothing is left on the source."""
        server = self.boot()
        source = server.compute_host
        address = self.fixed_ip(server)
        self.wait_for_console(server, base.GUEST_NET_MARKER)

        self.admin.compute.migrate_server(server)
        server = self.wait_for_status(server, 'VERIFY_RESIZE',
                                      timeout=base.MIGRATION_TIMEOUT)
        self.admin.compute.confirm_server_resize(server)
        server = self.wait_for_status(server, 'ACTIVE')

        self.assertNotEqual(source, server.compute_host)
        old = base.host_of(source)
        self.assertNotIn(server.id, self.domains(old))
        self.assertFalse(os.path.exists(self.instance_dir(old, server)))
        self.assertIn(server.id, self.domains(
            base.host_of(server.compute_host)))
        self.assertTrue(self.pingable(address),
                        'no answer from %s after the migration' % address)

    def test_nova_compute_runs_as_nova(self):
        """Both nova-compute services run as the nova user (uid, gid and
        its groups libvirt and kvm), without capabilities; root is reached
        only by their privsep helpers (through sudo and nova-rootwrap). A
        server's instance directory and files are nova's, its disk
        QEMU's user's while it runs (libvirt's dynamic ownership) and
        nova's again once it is stopped."""
        nova = pwd.getpwnam(layout.NOVA_USER)
        servers = [self.boot(host=name, wait=False)
                   for name in (os.uname().nodename, layout.HOSTNAME2)]
        for host in layout.HOSTS:
            pid = procs.read_pid(host.name + '-nova-compute')
            self.assertIsNotNone(pid, '%s has no nova-compute' % host)
            status = proc_status(pid)
            self.assertEqual([str(nova.pw_uid)] * 4, status['Uid'])
            self.assertEqual([str(nova.pw_gid)] * 4, status['Gid'])
            groups = {grp.getgrgid(int(gid)).gr_name
                      for gid in status['Groups']}
            self.assertEqual({layout.NOVA_USER} | set(layout.NOVA_GROUPS),
                             groups)
            self.assertEqual(['0000000000000000'], status['CapEff'])

        for server in servers:
            server = self.wait_for_status(server, 'ACTIVE')
            host = base.host_of(server.compute_host)
            directory = self.instance_dir(host, server)
            info = os.stat(directory)
            self.assertEqual((layout.NOVA_USER, 0o711),
                             (pwd.getpwuid(info.st_uid).pw_name,
                              info.st_mode & 0o7777))
            owners = file_owners(directory)
            self.assertEqual(QEMU_USER, owners['disk'], owners)
            # The console log is virtlogd's (root's) own.
            self.assertEqual(
                {}, {name: owner for name, owner in owners.items()
                     if owner == 'root' and name != 'console.log'})
            helpers = [
                member for member in procs.session_members(
                    procs.read_pid(host.name + '-nova-compute'))
                if b'privsep-helper' in [os.path.basename(arg) for arg in
                                         proc_cmdline(member)[:2]]]
            self.assertTrue(helpers, 'no privsep helper on %s' % host)
            for member in helpers:
                self.assertEqual('0', proc_status(member)['Uid'][0])

            self.admin.compute.stop_server(server)
            self.wait_for_status(server, 'SHUTOFF')
            self.assertEqual(layout.NOVA_USER,
                             file_owners(directory)['disk'])

    def test_build_fails_when_the_port_is_never_wired(self):
        """compute2's OVS agent frozen: the port binds (the agent still
        counts as alive) but is never wired, Neutron sends no
        network-vif-plugged, and the build fails after Nova's
        vif_plugging_timeout with nothing left on the host."""
        agent = procs.read_pid('compute2-neutron-openvswitch-agent')
        os.kill(agent, signal.SIGSTOP)
        self.addCleanup(os.kill, agent, signal.SIGCONT)

        server = self.boot(host=layout.HOSTNAME2, wait=False)
        server = self.wait_for_status(server, 'ERROR',
                                      timeout=base.BOOT_TIMEOUT + 120)
        # Nova's message for VirtualInterfaceCreateException.
        self.assertIn('Failed to allocate the network(s), not rescheduling',
                      server.fault['message'])
        host = layout.COMPUTE2
        self.assertNotIn(server.id, self.domains(host))
        self.assertFalse(os.path.exists(self.instance_dir(host, server)))
        port = list(self.admin.network.ports(device_id=server.id))
        self.assertFalse([p for p in self.ovs_ports(host)
                          if port and p.startswith('tap' + port[0].id[:11])])

    def test_rabbitmq_restart_under_a_boot(self):
        """A boot in flight when RabbitMQ restarts ends ACTIVE or ERROR,
        never stuck; the services reconnect and the next boot works."""
        server = self.boot(wait=False)
        procs.stop('rabbitmq')
        deploy_base.start_rabbitmq()
        server = self.wait_for_server(
            server, lambda s: s.status in ('ACTIVE', 'ERROR'),
            'ACTIVE or ERROR')
        self.assertIn(server.status, ('ACTIVE', 'ERROR'))
        self.boot()

    def test_up_again_changes_nothing(self):
        """deploy/up on the running cloud: every daemon keeps its PID."""
        before = {name: procs.read_pid(name) for name in procs.running()}
        subprocess.run([os.path.join(layout.REPO, 'deploy', 'up')],
                       check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
        after = {name: procs.read_pid(name) for name in procs.running()}
        self.assertEqual(before, after)
