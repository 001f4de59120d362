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

"""Quiesced snapshots of real guests running the real QEMU guest agent.

The guest (tests/functional/agent_image.py) mounts an ext4 root disk and
leaves a token in its page cache only: the token reaches the disk -- and
so a snapshot -- only if the agent's freeze syncs the filesystem. A server
booted from the snapshot prints the token it finds.
"""

import re
import time

import libvirt
from lxml import etree
from nova.compute import rpcapi as compute_rpcapi
from nova import exception
from nova import objects

from tests.functional import agent_image
from tests.functional import base
from tests.functional import guest_image
from tests.functional import test_snapshot

UNQUIESCED = 'Could not quiesce the guest, snapshotting it unquiesced'
AGENT_UNREACHABLE = (
    "libvirt failed freezing the guest's filesystems: [Error Code %d] "
    "Guest agent is not responding: QEMU guest agent is not connected. Is "
    "qemu-guest-agent running in the guest?"
    % libvirt.VIR_ERR_AGENT_UNRESPONSIVE)


class QuiescedSnapshotTest(test_snapshot.SnapshotTestBase):

    def image(self, agent=True, cmdline=None, **properties):
        """An image of the agent guest (``agent``) or the plain one."""
        guest = (agent_image.get_artifacts() if agent
                 else guest_image.get_guest_artifacts())
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        return self._upload(guest.root_disk, 'qcow2', 'kvmx-guest',
                            kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                            os_command_line=cmdline or guest.cmdline,
                            **properties)

    def no_agent_cmdline(self):
        return '%s %s' % (guest_image.KERNEL_CMDLINE,
                          agent_image.NO_AGENT_CMDLINE)

    def disk_tokens(self, server):
        """[('read' or 'wrote', token)] the guest printed, in order."""
        return re.findall(agent_image.DISK_MARKER_PREFIX + r' (read|wrote) '
                          r'(\S+)', self.console_output(server))

    def wait_for_agent(self, server, timeout=base.STATE_TIMEOUT):
        """Until libvirt sees the agent's port open (virsh dumpxml shows
        the channel ``connected``)."""
        deadline = time.monotonic() + timeout
        while True:
            target = etree.fromstring(self.domain(server).XMLDesc(0)).find(
                "devices/channel/target[@name='%s']" % agent_image.AGENT_PORT)
            if target.get('state') == 'connected':
                return
            if time.monotonic() > deadline:
                self.fail('the guest agent of %s is still %s after %ds'
                          % (server['id'], target.get('state'), timeout))
            time.sleep(0.5)

    def wait_for_freeze_status(self, server, status,
                               timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.freeze_status(server) != status:
            if time.monotonic() > deadline:
                self.fail('%s still not %s after %ds'
                          % (server['id'], status, timeout))
            time.sleep(0.5)

    def snapshot_error(self, server):
        """createImage that fails: once Nova is done, the snapshot's image
        is gone and the server's fault says why (Nova 34 snapshots in a
        task of its own: the createImage action's event succeeds before
        the snapshot starts)."""
        image_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        self.wait_for_task_done(server)
        self.assertNotIn(image_id, [
            i['id'] for i in self.glance.detail(self.ctxt)])
        return objects.InstanceFault.get_latest_for_instance(
            self.ctxt, server['id']).message

    def assert_still_running(self, server, dom_id):
        """ACTIVE, the same QEMU process, running, no block job left, no
        copy left in the snapshot directory."""
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])[
            'status'])
        dom = self.domain(server)
        self.assertEqual(dom_id, dom.ID())
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, dom.state()[0])
        self.assertEqual({}, dom.blockJobInfo('vda', 0))
        self.assertEqual([], self.snapshot_dir())

    def test_quiesced_snapshot_then_boot_from_it(self):
        server = self.boot(self.image(hw_qemu_guest_agent='yes',
                                      os_require_quiesce='yes'))
        (_, none), (_, token) = self.disk_tokens(server)
        self.assertEqual('none', none)
        self.wait_for_agent(server)
        dom_id = self.domain(server).ID()

        server, image = self.snapshot(server)
        self.assertEqual('active', image['status'])
        self.assertEqual('snapshot', image['properties']['image_type'])
        self.assertGreater(image['size'], 0)
        log = self.stdlog.logger.output
        frozen = log.index('Froze 1 filesystem(s) of the guest')
        self.assertGreater(log.index('Thawed 1 filesystem(s) of the guest'),
                           frozen)
        self.assertEqual('thawed', self.freeze_status(server))
        self.assert_still_running(server, dom_id)

        # The snapshot has what the guest had written but not synced: the
        # freeze did sync it.
        clone = self.boot(image['id'])
        self.assertEqual([('read', token)], self.disk_tokens(clone)[:1])

        # What Nova's API calls around volume snapshots, over RPC: a call
        # to quiesce, a cast to unquiesce.
        instance = objects.Instance.get_by_uuid(self.ctxt, server['id'])
        rpcapi = compute_rpcapi.ComputeAPI()
        rpcapi.quiesce_instance(self.ctxt, instance)
        self.assertEqual('frozen', self.freeze_status(server))
        rpcapi.unquiesce_instance(self.ctxt, instance)
        self.wait_for_freeze_status(server, 'thawed')

    def test_failed_freeze_snapshots_unquiesced(self):
        """Without os_require_quiesce, as Nova does: a warning, and a
        snapshot without what the guest had not synced."""
        server = self.boot(self.image(cmdline=self.no_agent_cmdline(),
                                      hw_qemu_guest_agent='yes'))
        self.assertIn('%s not started' % agent_image.AGENT_MARKER_PREFIX,
                      self.console_output(server))
        dom_id = self.domain(server).ID()

        server, image = self.snapshot(server)
        self.assertEqual('active', image['status'])
        log = self.stdlog.logger.output
        self.assertIn(UNQUIESCED, log)
        self.assertIn(AGENT_UNREACHABLE, log)
        self.assert_still_running(server, dom_id)

        clone = self.boot(image['id'])
        self.assertEqual([('read', 'none')], self.disk_tokens(clone)[:1])

    def test_required_quiesce_without_agent_fails(self):
        server = self.boot(self.image(agent=False, os_require_quiesce='yes'))
        dom_id = self.domain(server).ID()
        self.assertEqual(exception.QemuGuestAgentNotEnabled.msg_fmt,
                         self.snapshot_error(server))
        self.assert_still_running(server, dom_id)
        # Nova's API, before a volume snapshot, gets the same error (and
        # then snapshots unquiesced unless the image requires quiescing).
        instance = objects.Instance.get_by_uuid(self.ctxt, server['id'])
        self.assertRaises(exception.QemuGuestAgentNotEnabled,
                          compute_rpcapi.ComputeAPI().quiesce_instance,
                          self.ctxt, instance)

    def test_required_quiesce_with_unresponsive_agent_fails(self):
        server = self.boot(self.image(cmdline=self.no_agent_cmdline(),
                                      hw_qemu_guest_agent='yes',
                                      os_require_quiesce='yes'))
        dom_id = self.domain(server).ID()
        self.assertEqual('Failed to quiesce instance: ' + AGENT_UNREACHABLE,
                         self.snapshot_error(server))
        self.assertNotIn(UNQUIESCED, self.stdlog.logger.output)
        self.assert_still_running(server, dom_id)
