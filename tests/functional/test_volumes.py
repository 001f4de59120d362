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

"""Cinder volumes on real RBD images, given to real guests.

Nova's API and compute manager drive the volumes through Nova's Cinder
fixture (tests/functional/cinder_rbd.py), whose volumes are RBD images of
the tests' own Ceph cluster (tests/functional/ceph.py) and whose
connection info is Cinder's RBD driver's; QEMU opens them through librbd
with the libvirt secret holding client.cinder's key. The guest
(tests/functional/volume_image.py) reports on its console what it finds
on each disk and writes a token to a blank one, so data written through
one server is read back through another.
"""

import os
import time

import libvirt
from lxml import etree

from tests.functional import base
from tests.functional import guest_image
from tests.functional import volume_base
from tests.functional import volume_image

GiB = 1024 ** 3


class VolumeTestCase(volume_base.VolumesMixin, base.RealLibvirtTestCase):

    # Root: the test drives its Ceph cluster with the admin keyring
    # (root's) from set-up to the last check; tests/cloud runs
    # nova-compute as nova on Ceph.
    AS_NOVA = False
    PINNED_HOST = base.ONE_PINNED_CPU

    def setUp(self):
        self.setup_ceph()
        super().setUp()
        self.setup_volumes()
        self.image_id = self.create_volume_guest_image()
        self.flavor_id = self.create_flavor(name='kvmx.vol', disk=0)

    def boot(self, flavor_id=None, name='guest', image_id=None):
        server = self._create_server(
            name=name, image_uuid=image_id or self.image_id,
            flavor_id=flavor_id or self.flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server


class BootFromVolumeTest(VolumeTestCase):

    def test_boot_reboot_stop_start_delete(self):
        server = self.wait_for_status(self.boot_from_volume(
            self.flavor_id, image_id=self.image_id), 'ACTIVE')
        volume_id = self.api.get_server_volumes(server['id'])[0]['volumeId']
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        # The root disk is the volume Nova had made of the image: the
        # guest reads the image's token from it.
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB)])
        self.assert_disk(server, volume_id, 'vda')
        self.assertFalse(os.path.exists(
            os.path.join(self.instance_dir(server), 'disk')))
        self.assertEqual('/dev/vda',
                         server['OS-EXT-SRV-ATTR:root_device_name'])
        self.assertTrue(self.cinder.watchers(volume_id))

        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 2)
        self.assert_disk(server, volume_id, 'vda')
        self.api.post_server_action(server['id'], {'os-stop': {}})
        self.wait_for_status(server, 'SHUTOFF')
        self.api.post_server_action(server['id'], {'os-start': {}})
        self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 3)
        self.assert_disk(server, volume_id, 'vda')
        # Suspended (managed save) and resumed: the same guest, no boot.
        self.api.post_server_action(server['id'], {'suspend': None})
        self.wait_for_status(server, 'SUSPENDED')
        self.api.post_server_action(server['id'], {'resume': None})
        self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(3, self.console_output(server).count(
            guest_image.BOOT_MARKER_PREFIX))
        self.assert_disk(server, volume_id, 'vda')
        self.assertTrue(self.cinder.watchers(volume_id))

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        # delete_on_termination: the volume is gone with the server.
        self.assertNotIn(volume_id, self.cinder.volumes)
        self.assertNotIn('volume-' + volume_id,
                         self.ceph.rbd('ls', 'volumes').split())
        self.assert_no_secret_leaked([self.secret_uuid])


class AttachDetachTest(VolumeTestCase):

    def test_written_through_one_server_read_through_another(self):
        pinned = self.boot(self.create_pinned_flavor(name='kvmx.vol.pinned'),
                           name='pinned')
        claim = self.claim(pinned).cells[0].cpu_pinning
        dom_id = self.domain(pinned).ID()
        volume_id = self.cinder.create_volume()

        self.assertEqual('Success', self.attach(pinned,
                                                volume_id)['result'])
        self.wait_for_disks(pinned, [('vdb', 'wrote', None, GiB)])
        token = self.token(pinned, 'vdb')
        self.assert_disk(pinned, volume_id, 'vdb')
        self.assertEqual('/dev/vdb', self.api.get_server_volume(
            pinned['id'], volume_id)['device'])
        self.assertTrue(self.cinder.watchers(volume_id))
        # The same guest, on its claimed CPU.
        self.assertEqual(dom_id, self.domain(pinned).ID())
        self.assertEqual(claim, self.claim(pinned).cells[0].cpu_pinning)

        self.assertEqual('Success', self.detach(pinned,
                                                volume_id)['result'])
        self.wait_for_disks(pinned, [('vdb', 'wrote', token, GiB),
                                     ('vdb', 'gone', None, None)])
        self.assert_no_disk(pinned, volume_id)
        self.wait_for_no_watchers(volume_id)
        self.assertEqual({}, self.attachments(volume_id))
        self.assertEqual(('KVMX-TOKEN:' + token + '\n').encode(),
                         self.cinder.read(volume_id).rstrip(b'\0'))

        other = self.boot(name='other')
        self.assertEqual('Success', self.attach(other, volume_id)['result'])
        self.wait_for_disks(other, [('vdb', 'read', token, GiB)])
        self.assert_disk(other, volume_id, 'vdb')
        self.assert_no_secret_leaked([self.secret_uuid])

    def test_swap_to_another_volume_while_running(self):
        """Nova's volume swap (as Cinder's volume migration drives it):
        the guest's disk is copied to the new volume while it runs and
        pivoted to it; the old volume is let go of."""
        server = self.boot()
        old = self.cinder.create_volume()
        new = self.cinder.create_volume()
        self.attach(server, old)
        self.wait_for_disks(server, [('vdb', 'wrote', None, GiB)])
        token = self.token(server, 'vdb')
        dom_id = self.domain(server).ID()

        # Cinder migrating the volume calls Nova's swap.
        self.cinder.volumes[old]['migration_status'] = 'migrating'
        before = self.action_ids(server, 'swap_volume')
        self.api.put_server_volume(server['id'], old, new)
        event = self.wait_for_action_event(server, 'swap_volume',
                                           'compute_swap_volume', before)
        self.assertEqual('Success', event['result'])
        self.assertEqual(dom_id, self.domain(server).ID())
        self.assertEqual([new], [v['volumeId'] for v in
                                 self.api.get_server_volumes(server['id'])])
        self.wait_for_no_watchers(old)
        self.assertTrue(self.cinder.watchers(new))
        self.assertTrue(self.cinder.read(new).startswith(
            ('KVMX-TOKEN:' + token).encode()))
        disk = self.disk_of(self.domain(server).XMLDesc(0), old)
        self.assertEqual(self.cinder.spec(new),
                         disk.find('source').get('name'))
        self.assert_disk_defined(server, new)

        # Restarted, the guest has the new volume, named as Nova has it.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 2)
        self.wait_for_disks(server, [('vdb', 'wrote', token, GiB),
                                     ('vdb', 'read', token, GiB)])
        self.assert_disk(server, new, 'vdb')

    def assert_disk_defined(self, server, volume_id):
        disk = self.disk_of(self.domain(server).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE), volume_id)
        self.assertEqual(self.cinder.spec(volume_id),
                         disk.find('source').get('name'))
        self.assertEqual('ua-' + volume_id, disk.find('alias').get('name'))

    def test_multiattach_volume_on_two_servers(self):
        first = self.boot(name='first')
        second = self.boot(name='second')
        volume_id = self.cinder.create_volume(multiattach=True)
        self.assertEqual('Success', self.attach(first, volume_id)['result'])
        self.wait_for_disks(first, [('vdb', 'wrote', None, GiB)])
        token = self.token(first, 'vdb')
        self.assertEqual('Success', self.attach(second, volume_id)['result'])
        self.wait_for_disks(second, [('vdb', 'read', token, GiB)])
        for server in (first, second):
            disk = self.disk_of(self.domain(server).XMLDesc(0), volume_id)
            self.assertIsNotNone(disk.find('shareable'))
            self.assertEqual('none', disk.find('driver').get('cache'))
        self.assertEqual(2, len(self.cinder.watchers(volume_id)))

        self.assertEqual('Success', self.detach(first, volume_id)['result'])
        self.wait_for_disks(first, [('vdb', 'gone', None, None)])
        self.assertEqual(1, len(self.cinder.watchers(volume_id)))
        self.assert_disk(second, volume_id, 'vdb')


class ExtendResizeTest(VolumeTestCase):

    def test_boot_with_volume_extend_and_resize(self):
        volume_id = self.cinder.create_volume()
        server = self._build_server(name='data', image_uuid=self.image_id,
                                    flavor_id=self.flavor_id,
                                    networks='none')
        server['block_device_mapping_v2'] = [
            {'boot_index': 0, 'uuid': self.image_id, 'source_type': 'image',
             'destination_type': 'local'},
            {'boot_index': -1, 'uuid': volume_id, 'source_type': 'volume',
             'destination_type': 'volume'}]
        server = self.wait_for_status(
            self.api.post_server({'server': server}), 'ACTIVE')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, None),
            ('vdb', 'wrote', None, GiB)])
        self.assert_disk(server, volume_id, 'vdb')
        token = self.token(server, 'vdb')

        # Cinder grew the image and tells Nova: the guest sees the size.
        self.cinder.extend(volume_id, 2)
        self.api.create_server_external_events([{
            'name': 'volume-extended', 'server_uuid': server['id'],
            'tag': volume_id}])
        self.wait_for_disks(server, [('vdb', 'size', None, 2 * GiB)])
        self.assertEqual(2 * GiB, self.cinder.image_size(volume_id))

        # Cinder says 3 GiB but did not grow the image: refused, the
        # guest is not asked (it would have QEMU grow the image itself,
        # blocking the guest on a full pool).
        dom_id = self.domain(server).ID()
        self.cinder.extend(volume_id, 3, resize_image=False)
        before = self.action_ids(server, 'extend_volume')
        self.api.create_server_external_events([{
            'name': 'volume-extended', 'server_uuid': server['id'],
            'tag': volume_id}])
        event = self.wait_for_action_event(server, 'extend_volume',
                                           'compute_extend_volume', before)
        self.assertEqual('Error', event['result'])
        self.assertIn('Volume %s could not be extended' % volume_id,
                      event['details'])
        self.assertIn('Cinder did not grow it', event['details'])
        self.assertEqual(dom_id, self.domain(server).ID())
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain(server).state()[0])
        self.assertEqual(2 * GiB, self.domain(server).blockInfo('vdb')[0])

        # A resize on this host: the volume is let go of and taken again.
        self.flags(allow_resize_to_same_host=True)
        bigger = self.create_flavor(name='kvmx.vol.big', ram=320, disk=0)
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': bigger}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        # A new console log: the old one stays with the old files.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.wait_for_disks(server, [('vdb', 'read', token, 2 * GiB)])
        self.assert_disk(server, volume_id, 'vdb')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(320 * 1024, self.domain(server).info()[1])
        self.assert_no_secret_leaked([self.secret_uuid])


class FaultsTest(VolumeTestCase):
    """Volumes that cannot be given to a running guest: each attach fails
    with an error naming the volume and the cause, within seconds; the
    guest runs on untouched (same domain, no new disk, live or defined);
    nothing is left connected or opened, no libvirt secret is left."""

    def setUp(self):
        super().setUp()
        self.flags(rbd_connect_timeout=3, group='libvirt')
        self.server = self.boot()
        self.dom_id = self.domain(self.server).ID()

    def failed_attach(self, volume_id):
        event = self.attach(self.server, volume_id)
        self.assertEqual('Error', event['result'])
        self.assertIn(volume_id, event['details'])
        dom = self.domain(self.server)
        self.assertEqual((self.dom_id, libvirt.VIR_DOMAIN_RUNNING),
                         (dom.ID(), dom.state()[0]))
        self.assert_no_disk(self.server, volume_id)
        self.assertEqual([], self.cinder.watchers(volume_id))
        self.assertEqual({}, self.attachments(volume_id))
        self.assertEqual([], [e for e in volume_image.events(
            self.console_output(self.server)) if e[0] != 'vda'])
        return event['details']

    def test_attach_faults(self):
        conn = self.libvirt()
        # The libvirt secret holds another user's key.
        wrong = self.add_secret(conn, self.ceph.key('nova'),
                                usage='client.nova')
        volume_id = self.cinder.create_volume()
        self.cinder.overrides[volume_id] = {'secret_uuid': wrong}
        details = self.failed_attach(volume_id)
        self.assertIn('Cannot connect volume %s: libvirt secret %s did not '
                      'let client.cinder in within 3 s (monitors %s:%s '
                      'answer): wrong key' % (
                          volume_id, wrong, self.ceph.mon_host,
                          self.ceph.mon_port), details)

        # The cluster cannot be reached.
        unreachable = self.cinder.create_volume()
        self.cinder.overrides[unreachable] = {'ports': ['9']}
        details = self.failed_attach(unreachable)
        self.assertIn('no Ceph monitor answers at %s:9 (3 s' %
                      self.ceph.mon_host, details)

        # The secret Cinder names is not defined on this host.
        missing = self.cinder.create_volume()
        self.cinder.overrides[missing] = {
            'secret_uuid': '2d7c1e8a-9b44-4f61-a3d2-5e8f0c6b1a90'}
        details = self.failed_attach(missing)
        self.assertIn('libvirt secret 2d7c1e8a-9b44-4f61-a3d2-5e8f0c6b1a90 '
                      '(client.cinder\'s key) is not defined on this host',
                      details)

        # A protocol this driver does not attach.
        nfs = self.cinder.create_volume()
        self.cinder.overrides[nfs] = {'driver_volume_type': 'nfs',
                                      'export': '10.0.0.5:/srv/cinder'}
        details = self.failed_attach(nfs)
        self.assertIn('nova-kvmx does not attach nfs volumes', details)

        self.assert_no_secret_leaked([self.secret_uuid, wrong])
        # The guest still takes a good volume.
        good = self.cinder.create_volume()
        self.assertEqual('Success', self.attach(self.server, good)['result'])
        self.wait_for_disks(self.server, [('vdb', 'wrote', None, GiB)])

    def test_detach_the_guest_does_not_answer(self):
        """A paused guest cannot release a disk: the detach fails after
        Nova's attempts, the volume stays attached and connected; once
        the guest released it, a detach completes."""
        self.flags(device_detach_attempts=2, device_detach_timeout=2,
                   group='libvirt')
        volume_id = self.cinder.create_volume()
        self.attach(self.server, volume_id)
        self.wait_for_disks(self.server, [('vdb', 'wrote', None, GiB)])
        self.api.post_server_action(self.server['id'], {'pause': None})
        self.wait_for_status(self.server, 'PAUSED')

        event = self.detach(self.server, volume_id)
        self.assertEqual('Error', event['result'])
        self.assertIn('Device detach failed for vdb: the guest did not '
                      'release it after 2 requests', event['details'])
        self.assertEqual([volume_id], [
            v['volumeId'] for v in self.api.get_server_volumes(
                self.server['id'])])
        self.assertIsNotNone(self.disk_of(self.domain(self.server).XMLDesc(
            0), volume_id))
        self.assertTrue(self.cinder.watchers(volume_id))
        self.assertTrue(self.attachments(volume_id))

        # Running again, the guest takes the request it had: the device
        # goes; Nova's detach then finds it gone and completes.
        self.api.post_server_action(self.server['id'], {'unpause': None})
        self.wait_for_status(self.server, 'ACTIVE')
        self.wait_for_disks(self.server, [('vdb', 'gone', None, None)])
        self.assertEqual('Success', self.detach(self.server, volume_id)[
            'result'])
        self.wait_for_no_watchers(volume_id)
        self.assertEqual({}, self.attachments(volume_id))

    def test_attach_racing_a_delete(self):
        volume_id = self.cinder.create_volume()
        self.api.post_server_volume(
            self.server['id'], {'volumeAttachment': {'volumeId': volume_id}})
        self.api.delete_server(self.server['id'])
        self.wait_until_deleted(self.server)
        self.assertFalse(self.domain_exists(self.server))
        self.wait_for_no_watchers(volume_id)
        self.wait_for_no_attachments(volume_id)
        self.assert_no_secret_leaked([self.secret_uuid])


class VolumeBackedSnapshotRescueTest(VolumeTestCase):
    """A server on a root volume, with the QEMU guest agent: Nova's API
    snapshots its volume (Cinder) between the driver's quiesce and
    unquiesce; a stable device rescue boots the rescue disk with the root
    volume where it is."""

    def wait_for_agent(self, server, timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            target = etree.fromstring(self.domain(server).XMLDesc(0)).find(
                "devices/channel/target[@name='org.qemu.guest_agent.0']")
            if target is not None and target.get('state') == 'connected':
                return
            if time.monotonic() > deadline:
                self.fail('the guest agent of %s is not connected after %ds'
                          % (server['id'], timeout))
            time.sleep(0.5)

    def test_quiesced_snapshot_and_rescue(self):
        image_id = self.create_volume_guest_image(hw_qemu_guest_agent='yes')
        volume_id = self.cinder.create_volume(image_id=image_id)
        server = self.wait_for_status(self.boot_from_volume(
            self.flavor_id, volume_id=volume_id), 'ACTIVE')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB)])
        self.wait_for_agent(server)

        image = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'bfv-snap'}})
        snapshot = self.wait_for_snapshot_image(image['image_id'])
        bdms = snapshot['properties']['block_device_mapping']
        self.assertEqual(1, len(bdms))
        self.assertEqual(['snapshot-' + bdms[0]['snapshot_id']],
                         self.cinder.snapshots(volume_id))
        self.assertIn('Froze 1 filesystem(s) of the guest',
                      self.stdlog.logger.output)
        # Nova thaws the guest (an RPC cast) once Cinder has the snapshot.
        self.wait_for_log('Thawed 1 filesystem(s) of the guest')
        self.assertEqual('thawed', self.freeze_status(server))

        # Stable device rescue: the root volume stays vda, the rescue
        # disk comes last and is booted.
        rescue_image = self.create_volume_guest_image(
            hw_rescue_device='disk', hw_rescue_bus='virtio')
        self.api.post_server_action(server['id'], {'rescue': {
            'rescue_image_ref': rescue_image}})
        server = self.wait_for_status(server, 'RESCUE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 2)
        root = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual(
            [('vda', 'network', None), ('vdb', 'file', '1')],
            [(d.find('target').get('dev'), d.get('type'),
              d.find('boot').get('order') if d.find('boot') is not None
              else None) for d in root.findall('devices/disk')])
        self.assert_disk(server, volume_id, 'vda')
        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 3)
        root = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual(['vda'], [
            d.find('target').get('dev') for d in root.findall(
                'devices/disk')])
        self.assertFalse(os.path.exists(os.path.join(
            self.instance_dir(server), 'disk.rescue')))

    def wait_for_log(self, text, timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while text not in self.stdlog.logger.output:
            if time.monotonic() > deadline:
                self.fail('%r not logged after %ds' % (text, timeout))
            time.sleep(0.5)

    def wait_for_snapshot_image(self, image_id, timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            image = self.glance.show(self.ctxt, image_id)
            if image['status'] == 'active':
                return image
            if time.monotonic() > deadline:
                self.fail('snapshot image %s is %s after %ds' % (
                    image_id, image['status'], timeout))
            time.sleep(0.5)
