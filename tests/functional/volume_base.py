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

"""What the volume tests share: the tests' Ceph cluster, the libvirt
secret holding client.cinder's key (defined as an operator defines it:
the driver only reads it), Nova's Cinder fixture with real RBD volumes,
and the guest that reports its disks (tests/functional/volume_image.py).
"""

import base64
import time
import uuid

import fixtures
import libvirt
from lxml import etree
import os_brick.privileged

from tests.functional import base
from tests.functional import ceph
from tests.functional import cinder_rbd
from tests.functional import volume_image


def define_secret(conn, key, usage, secret_uuid=None):
    """A ceph libvirt secret holding ``key`` (base64); its UUID."""
    secret_uuid = secret_uuid or str(uuid.uuid4())
    secret = conn.secretDefineXML(
        "<secret ephemeral='no' private='no'><uuid>%s</uuid>"
        "<usage type='ceph'><name>%s %s</name></usage></secret>" % (
            secret_uuid, usage, secret_uuid))
    secret.setValue(base64.b64decode(key))
    return secret_uuid


def undefine_secret(conn, secret_uuid):
    try:
        conn.secretLookupByUUIDString(secret_uuid).undefine()
    except libvirt.libvirtError:
        pass


class VolumesMixin(object):
    """For a RealLibvirtTestCase: call :meth:`setup_volumes` in setUp."""

    def setup_ceph(self):
        """The cluster, or a skip saying why there is none. Before the
        services start: a skipped test starts nothing."""
        try:
            self.ceph = ceph.cluster()
        except ceph.Unavailable as ex:
            self.skipTest('no Ceph cluster for the volume tests: %s' % ex)

    def setup_volumes(self):
        self.secret_uuid = self.add_secret(self.libvirt(),
                                           self.ceph.key('cinder'))
        self.cinder = self.useFixture(cinder_rbd.RBDCinderFixture(
            self, self.ceph, self.secret_uuid))
        # os-brick's privileged calls (the connector properties) run in
        # this process, as root, like Nova's own in these tests.
        self.useFixture(fixtures.MockPatchObject(
            os_brick.privileged.default, 'client_mode', False))
        # The secrets there are besides the tests': none may be left by
        # the driver.
        self.secrets_before = set(self.libvirt().listSecrets())

    def add_secret(self, conn, key, usage='client.cinder', secret_uuid=None):
        """Define a libvirt secret (``secret_uuid``: the UUID another host
        has it under, as every host of a cloud has Cinder's)."""
        secret_uuid = define_secret(conn, key, '%s %s' % (
            usage, self.domain_prefix), secret_uuid)
        self.addCleanup(undefine_secret, conn, secret_uuid)
        return secret_uuid

    def assert_no_secret_leaked(self, extra=()):
        self.assertEqual(self.secrets_before | set(extra),
                         set(self.libvirt().listSecrets()))

    # -- images and servers ------------------------------------------------

    def create_volume_guest_image(self, **properties):
        guest = volume_image.get_artifacts()
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        return self._upload(guest.root_disk, 'raw', 'kvmx-volume-guest',
                            kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                            os_command_line=guest.cmdline, **properties)

    def boot_from_volume(self, flavor_id, volume_id=None, image_id=None,
                         extra_bdms=(), name='bfv', host=None):
        """A server whose root disk is a volume: ``volume_id``, or a new
        1 GiB volume Nova makes of ``image_id`` (deleted with the
        server)."""
        if volume_id:
            root = {'boot_index': 0, 'uuid': volume_id,
                    'source_type': 'volume', 'destination_type': 'volume'}
        else:
            root = {'boot_index': 0, 'uuid': image_id,
                    'source_type': 'image', 'destination_type': 'volume',
                    'volume_size': 1, 'delete_on_termination': True}
        server = self._build_server(name=name, image_uuid='',
                                    flavor_id=flavor_id, networks='none',
                                    host=host)
        server['block_device_mapping_v2'] = [root] + list(extra_bdms)
        return self.api.post_server({'server': server})

    def wait_for_disks(self, server, expected, timeout=base.STATE_TIMEOUT):
        """Until the guest has reported ``expected`` (a list of event
        tuples of volume_image.events, None matching anything) in that
        order; returns the events."""
        deadline = time.monotonic() + timeout
        while True:
            seen = volume_image.events(self.console_output(server))
            i = 0
            for event in seen:
                if i < len(expected) and all(
                        want is None or want == got
                        for want, got in zip(expected[i], event)):
                    i += 1
            if i == len(expected):
                return seen
            if time.monotonic() > deadline:
                self.fail('the guest of %s reported %s, not %s after %ds' % (
                    server['id'], seen, expected, timeout))
            time.sleep(0.5)

    def token(self, server, dev, what='wrote'):
        """The token the guest wrote to (or read from) ``dev``."""
        for event in reversed(volume_image.events(
                self.console_output(server))):
            if event[0] == dev and event[1] == what:
                return event[2]
        self.fail('the guest of %s reported no %s token of %s' % (
            server['id'], what, dev))

    def attach(self, server, volume_id):
        """Attach from the API; the compute_attach_volume event of this
        attach once it has a result."""
        before = self.action_ids(server, 'attach_volume')
        self.api.post_server_volume(
            server['id'], {'volumeAttachment': {'volumeId': volume_id}})
        return self.wait_for_action_event(server, 'attach_volume',
                                          'compute_attach_volume', before)

    def detach(self, server, volume_id):
        before = self.action_ids(server, 'detach_volume')
        self.api.delete_server_volume(server['id'], volume_id)
        return self.wait_for_action_event(server, 'detach_volume',
                                          'compute_detach_volume', before)

    def action_ids(self, server, action):
        """The request ids of the server's ``action`` actions so far."""
        return {a['request_id'] for a in self.api.get_instance_actions(
            server['id']) if a['action'] == action}

    def wait_for_action_event(self, server, action, event_name,
                              before=(), timeout=base.STATE_TIMEOUT):
        """The ``event_name`` event of the server's ``action`` action that
        is not one of ``before`` (request ids), once it has a result."""
        deadline = time.monotonic() + timeout
        while True:
            for a in self.api.get_instance_actions(server['id']):
                if a['action'] != action or a['request_id'] in before:
                    continue
                events = self.api.get_instance_action_details(
                    server['id'], a['request_id'])['events']
                for event in events:
                    if event['event'] == event_name and event['result']:
                        return event
            if time.monotonic() > deadline:
                self.fail('no %s event of a new %s of %s after %ds' % (
                    event_name, action, server['id'], timeout))
            time.sleep(0.5)

    def disk_of(self, domain_xml, volume_id):
        """The <disk> with the volume's serial, or None."""
        root = etree.fromstring(domain_xml)
        for disk in root.findall('devices/disk'):
            if disk.findtext('serial') == volume_id:
                return disk
        return None

    def assert_disk(self, server, volume_id, dev, conn=None):
        """The running domain and its definition both have the volume at
        ``dev``, as the RBD disk of Cinder's connection."""
        dom = (conn or self.libvirt()).lookupByUUIDString(server['id'])
        for xml in (dom.XMLDesc(0), dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE)):
            disk = self.disk_of(xml, volume_id)
            self.assertIsNotNone(disk, 'volume %s not in %s' % (
                volume_id, xml))
            self.assertEqual(('network', dev), (
                disk.get('type'), disk.find('target').get('dev')))
            self.assertEqual(self.cinder.spec(volume_id),
                             disk.find('source').get('name'))
            self.assertEqual('ua-' + volume_id,
                             disk.find('alias').get('name'))

    def assert_no_disk(self, server, volume_id, conn=None):
        dom = (conn or self.libvirt()).lookupByUUIDString(server['id'])
        for xml in (dom.XMLDesc(0), dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE)):
            self.assertIsNone(self.disk_of(xml, volume_id))

    def wait_for_no_watchers(self, volume_id, timeout=30):
        """Until no QEMU has the volume's image open."""
        deadline = time.monotonic() + timeout
        while self.cinder.watchers(volume_id):
            if time.monotonic() > deadline:
                self.fail('volume %s is still open: %s' % (
                    volume_id, self.cinder.watchers(volume_id)))
            time.sleep(0.5)

    def attachments(self, volume_id):
        return self.cinder.volume_to_attachment.get(volume_id, {})

    def wait_for_no_attachments(self, volume_id, timeout=30):
        """Until Cinder has no attachment of the volume (an attach that
        lost a race removes its attachment when it fails, which may be
        after the server is gone)."""
        deadline = time.monotonic() + timeout
        while self.attachments(volume_id):
            if time.monotonic() > deadline:
                self.fail('volume %s is still attached: %s' % (
                    volume_id, self.attachments(volume_id)))
            time.sleep(0.5)
