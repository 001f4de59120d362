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

"""Nova's CinderFixture with volumes that are real RBD images.

Nova's fixture stands in for Cinder's API (attachments, volume states,
snapshots); here every volume it creates -- by the test, or by Nova for an
image-to-volume block device mapping -- is an RBD image in the real
cluster's ``volumes`` pool (tests/functional/ceph.py), an image's data
written into it as Cinder's RBD driver would, and the connection info of
an attachment is the one Cinder's RBD driver returns for it
(``initialize_connection``, then the volume manager's
``_parse_connection_options``). Extending a volume resizes its image;
a volume snapshot is an RBD snapshot; deleting a volume removes its
image. ``overrides`` changes one volume's connection data (another
monitor, another libvirt secret) for the fault tests.
"""

import collections
import copy
import json
import os
import tempfile

import fixtures
from nova import exception
from nova.tests.fixtures import cinder as nova_cinder
from oslo_concurrency import processutils


class RBDCinderFixture(nova_cinder.CinderFixture):

    POOL = 'volumes'

    def __init__(self, test, cluster, secret_uuid):
        """:param cluster: tests.functional.ceph.Cluster
        :param secret_uuid: the libvirt secret (client.cinder's key) as
            cinder.conf's rbd_secret_uuid names it
        """
        super().__init__(test)
        self.cluster = cluster
        self.secret_uuid = secret_uuid
        self.overrides = collections.defaultdict(dict)
        self.multiattach = set()

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'nova.volume.cinder.API.delete', side_effect=self.fake_delete,
            autospec=False))
        self.addCleanup(self._remove_all)

    # -- volumes -------------------------------------------------------------

    def image_name(self, volume_id):
        return 'volume-%s' % volume_id

    def spec(self, volume_id):
        return '%s/%s' % (self.POOL, self.image_name(volume_id))

    def create_volume(self, size_gb=1, image_id=None, multiattach=False,
                      name=None):
        """A new volume (an RBD image), 'available'; with ``image_id``,
        holding that Glance image's data and its properties, as a volume
        Cinder created from an image."""
        volume = self.fake_vol_create(None, size_gb, name, None,
                                      image_id=image_id)
        if multiattach:
            self.multiattach.add(volume['id'])
            volume['multiattach'] = True
        return volume['id']

    def fake_vol_create(self, _ctxt, size, name, description, snapshot=None,
                        image_id=None, volume_type=None, metadata=None,
                        availability_zone=None):
        volume = super().fake_vol_create(
            _ctxt, size, name, description, snapshot=snapshot,
            image_id=image_id, volume_type=volume_type, metadata=metadata,
            availability_zone=availability_zone)
        self.cluster.rbd('create', '--size', '%dM' % (size * 1024),
                         self.spec(volume['id']))
        if image_id:
            self._write_image(volume['id'], image_id)
            image = self.test.glance.show(None, image_id)
            volume['bootable'] = True
            volume['volume_image_metadata'] = dict(
                {k: str(v) for k, v in image.get('properties', {}).items()},
                image_id=image_id, image_name=image.get('name'),
                disk_format=image.get('disk_format'),
                container_format=image.get('container_format'),
                min_ram='0', min_disk='0', size=str(image.get('size')))
        return volume

    def _is_multiattach(self, volume_id):
        return (volume_id in getattr(self, 'multiattach', ()) or
                super()._is_multiattach(volume_id))

    def _write_image(self, volume_id, image_id):
        """The image's data into the volume, in raw, as Cinder's RBD
        driver copies an image into a new volume."""
        data = self.test.glance._imagedata[image_id]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'image')
            with open(path, 'wb') as f:
                f.write(data)
            processutils.execute(
                'qemu-img', 'convert', '-n', '-O', 'raw', path,
                'rbd:%s:id=cinder:conf=%s' % (self.spec(volume_id),
                                              self.cluster.conf))

    def extend(self, volume_id, size_gb, resize_image=True):
        """What Cinder does for ``volume extend``: the image grows (unless
        ``resize_image`` is False) and the volume says its new size."""
        if resize_image:
            self.cluster.rbd('resize', '--size', '%dM' % (size_gb * 1024),
                             self.spec(volume_id))
        self.volumes[volume_id]['size'] = size_gb

    def image_size(self, volume_id):
        info = self.cluster.rbd('info', '--format', 'json',
                                self.spec(volume_id))
        return json.loads(info)['size']

    def read(self, volume_id, length=512):
        """The first bytes of the volume, read through librbd."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'head')
            self.cluster.rbd('export', self.spec(volume_id), path)
            with open(path, 'rb') as f:
                return f.read(length)

    def watchers(self, volume_id):
        """The clients (QEMUs) that have the volume's image open."""
        status = json.loads(self.cluster.rbd(
            'status', '--format', 'json', self.spec(volume_id)))
        return status.get('watchers', [])

    def fake_delete(self, context, volume_id):
        if volume_id not in self.volumes:
            raise exception.VolumeNotFound(volume_id=volume_id)
        self.cluster.rbd('snap', 'purge', self.spec(volume_id))
        self.cluster.rbd('rm', self.spec(volume_id))
        del self.volumes[volume_id]

    def fake_create_snapshot_force(self, _ctxt, volume_id, name,
                                   description):
        snapshot = super().fake_create_snapshot_force(
            _ctxt, volume_id, name, description)
        self.cluster.rbd('snap', 'create', '%s@snapshot-%s' % (
            self.spec(volume_id), snapshot['id']))
        return snapshot

    def snapshots(self, volume_id):
        return [s['name'] for s in json.loads(self.cluster.rbd(
            'snap', 'ls', '--format', 'json', self.spec(volume_id)))]

    def _remove_all(self):
        for volume_id in list(self.volumes):
            try:
                self.fake_delete(None, volume_id)
            except Exception:
                pass

    # -- attachments -----------------------------------------------------

    def connection_data(self, volume_id):
        """Cinder's RBD driver's connection data for the volume (rbd_user
        cinder, rbd_secret_uuid set, the cluster's one monitor), as the
        volume manager completes it."""
        data = {
            'name': self.spec(volume_id),
            'hosts': [self.cluster.mon_host],
            'ports': [self.cluster.mon_port],
            'cluster_name': 'ceph',
            'auth_enabled': True,
            'auth_username': 'cinder',
            'secret_type': 'ceph',
            'secret_uuid': self.secret_uuid,
            'volume_id': volume_id,
            'discard': True,
            'keyring': None,
            'qos_specs': None,
            'access_mode': 'rw',
            'encrypted': False,
        }
        data.update(self.overrides.get(volume_id, {}))
        return data

    def fake_attachment_update(self, context, attachment_id, connector,
                               mountpoint=None):
        """Nova's, letting a multi-attach volume of this fixture be
        connected to several servers at once (Nova's allows it for its
        MULTIATTACH_VOL only)."""
        volume_id, attachment, _ = self._find_attachment(attachment_id)
        if volume_id not in self.multiattach:
            return super().fake_attachment_update(
                context, attachment_id, connector, mountpoint)
        if mountpoint:
            connector['device'] = mountpoint
        attachment['connector'] = connector
        return {'id': attachment_id,
                'connection_info': self._find_connection_info(
                    volume_id, attachment_id)}

    def _find_connection_info(self, volume_id, attachment_id):
        if volume_id not in self.volumes:
            return super()._find_connection_info(volume_id, attachment_id)
        data = self.connection_data(volume_id)
        data['attachment_id'] = attachment_id
        kind = data.pop('driver_volume_type', 'rbd')
        return {'driver_volume_type': kind, 'data': copy.deepcopy(data)}

    def fake_get(self, context, volume_id, microversion=None):
        """Nova's, with the attachments of the volumes made here too (by
        instance, as nova.volume.cinder gives them), as Nova's API checks
        them before a swap."""
        volume = super().fake_get(context, volume_id, microversion)
        if volume_id in self.volumes:
            volume['attachments'] = {
                a['instance_uuid']: {'attachment_id': a['id'],
                                     'mountpoint': '/dev/vdb'}
                for a in self.volume_to_attachment[volume_id].values()}
        return volume
