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

"""Cinder volumes on Ceph RBD in the cloud's smoke, as a user drives them
with the ``openstack`` command: a server booted from a volume made of the
test image, and a blank volume attached to a running server and detached.
What libvirt holds is read on the host (``virsh dumpxml``), and what Ceph
holds in the ``volumes`` pool (``rbd ls``).
"""

import subprocess

from lxml import etree

from tests.cloud import base

from cloud import layout  # noqa: I100 (deploy/, see base)

VOLUME_TIMEOUT = 120


class VolumeTest(base.CloudTestCase):

    def create_volume(self, *args, cloud='kvmx-demo'):
        """``openstack volume create`` of 1 GiB with ``args``; the volume
        once available. Deleted (and waited for) at cleanup."""
        created = self.openstack('volume', 'create', '--size', '1', *args,
                                 self.getUniqueString('kvmx-smoke-vol'),
                                 cloud=cloud)
        self.addCleanup(self.delete_volume, created['id'])
        return self.wait_for_volume(created['id'], 'available')

    def wait_for_volume(self, volume_id, status, timeout=VOLUME_TIMEOUT):
        volume = self.admin.block_storage.get_volume(volume_id)
        try:
            return self.admin.block_storage.wait_for_status(
                volume, status, failures=['error'], interval=2,
                wait=timeout)
        except Exception as ex:
            self.fail('volume %s is %s, waiting for %s: %s' % (
                volume_id, self.admin.block_storage.get_volume(
                    volume_id).status, status, ex))

    def delete_volume(self, volume_id):
        volume = self.admin.block_storage.find_volume(volume_id)
        if volume is None:
            return
        if volume.status == 'in-use':
            for attachment in volume.attachments:
                self.admin.compute.delete_volume_attachment(
                    attachment['server_id'], volume_id)
            self.wait_for_volume(volume_id, 'available')
        self.admin.block_storage.delete_volume(volume_id)
        self.admin.block_storage.wait_for_delete(volume, wait=VOLUME_TIMEOUT)

    def rbd_images(self):
        """The images in the cloud's RBD pool, as Cinder's cephx user sees
        them."""
        return subprocess.run(
            ['rbd', '-c', layout.CEPH_CONF, '--id', layout.CEPH_USER, 'ls',
             layout.VOLUME_POOL], check=True, stdout=subprocess.PIPE,
            text=True, timeout=60).stdout.split()

    def rbd_disks(self, server):
        """The RBD network disks of the server's domain: {image name:
        (cephx user, secret UUID, target dev)}."""
        host = base.host_of(server.compute_host)
        xml = etree.fromstring(self.domain_xml(host, server).encode())
        return {
            disk.xpath('string(source/@name)'): (
                disk.xpath('string(auth/@username)'),
                disk.xpath('string(auth/secret/@uuid)'),
                disk.xpath('string(target/@dev)'))
            for disk in xml.xpath(
                "//devices/disk[@type='network'][source/@protocol='rbd']")}

    def delete_with_cli(self, volume, cloud='kvmx-demo'):
        """``openstack volume delete``; then Cinder has no such volume and
        the pool no such image."""
        self.openstack('volume', 'delete', volume.id, cloud=cloud,
                       output=False)
        self.admin.block_storage.wait_for_delete(volume, wait=VOLUME_TIMEOUT)
        self.assertNotIn('volume-%s' % volume.id, self.rbd_images())

    def test_boot_from_volume(self):
        """A volume made of the test image, a server booted from it with
        ``server create --volume``: ACTIVE, the guest boots (its console
        marker), its root disk is the volume's RBD image; after the server
        and the volume are deleted, the image is gone from the pool."""
        volume = self.create_volume('--image', 'kvmx-guest', '--bootable')
        self.assertIn('volume-%s' % volume.id, self.rbd_images())
        created = self.openstack(
            'server', 'create', '--flavor', 'kvmx.tiny', '--volume',
            volume.id, '--network', layout.PROVIDER_NET, '--wait',
            self.getUniqueString('kvmx-smoke-bfv'))
        server = self.admin.compute.get_server(created['id'])
        self.addCleanup(self.delete, server)
        self.assertEqual('ACTIVE', server.status)
        self.wait_for_console(server, 'KVMX-GUEST-BOOTED')

        disks = self.rbd_disks(server)
        name = '%s/volume-%s' % (layout.VOLUME_POOL, volume.id)
        self.assertEqual([name], list(disks))
        self.assertEqual(layout.CEPH_USER, disks[name][0])
        self.assertEqual('in-use', self.wait_for_volume(
            volume.id, 'in-use').status)

        self.openstack('server', 'delete', '--wait', server.id,
                       output=False)
        self.wait_for_volume(volume.id, 'available')
        self.delete_with_cli(volume)

    def test_attach_and_detach_a_blank_volume(self):
        """``server add volume`` on a running server of compute2 (whose
        QEMU reaches Ceph through its forwarders; the scheduler puts the
        other test's server on compute1): the volume is in-use and the
        domain has it as an RBD network disk with Cinder's cephx user and
        secret; ``server remove volume``: available again, no RBD disk in
        the domain, no attachment listed; deleted, its image is gone from
        the pool. As the admin, who picks the host."""
        admin = 'kvmx-admin'
        server = self.boot(host=layout.HOSTNAME2)
        self.assertEqual(layout.HOSTNAME2, server.compute_host)
        # The guest's kernel answers the hot-unplug request.
        self.wait_for_console(server, 'KVMX-GUEST-BOOTED')
        volume = self.create_volume(cloud=admin)

        self.openstack('server', 'add', 'volume', server.id, volume.id,
                       cloud=admin, output=False)
        volume = self.wait_for_volume(volume.id, 'in-use')
        self.assertEqual([server.id], [a['server_id']
                                       for a in volume.attachments])
        disks = self.rbd_disks(server)
        name = '%s/volume-%s' % (layout.VOLUME_POOL, volume.id)
        self.assertEqual([name], list(disks))
        user, secret, dev = disks[name]
        self.assertEqual(layout.CEPH_USER, user)
        # The secret of Cinder's connection info, defined on that host.
        self.assertRegex(secret, '^[0-9a-f-]{36}$')
        self.assertIn(secret, self.virsh(
            base.host_of(server.compute_host), 'secret-list'))
        self.assertEqual('/dev/' + dev, volume.attachments[0]['device'])

        self.openstack('server', 'remove', 'volume', server.id, volume.id,
                       cloud=admin, output=False)
        self.wait_for_volume(volume.id, 'available')
        self.assertEqual({}, self.rbd_disks(server))
        self.assertEqual([], self.openstack('server', 'volume', 'list',
                                            server.id, cloud=admin))
        self.delete_with_cli(volume, cloud=admin)
