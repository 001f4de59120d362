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

"""Connection info as Nova receives it from Cinder's volume drivers.

Each is what Cinder 29's attachment update returns for the driver named
(``initialize_connection`` of the driver, then the volume manager's
``_parse_connection_options``: ``qos_specs``, ``access_mode``,
``encrypted``, ``discard``), with the ``serial`` Nova adds and, for the
block protocols, what os-brick's connect adds (``device_path``,
``multipath_id``). Addresses, IQNs, WWNs and NQNs have the shapes those
drivers and os-brick produce.
"""

import copy

VOLUME_ID = '0e2b3d5c-7f1a-4c55-8f0e-2b9d6c1a4e77'
OTHER_VOLUME_ID = '9a1c7e42-5b3d-4f08-a6e1-77c2d0b3f915'
SECRET_UUID = '457eb676-33da-42ec-9a8c-9293d545c337'
NOVA_SECRET_UUID = '2d7c1e8a-9b44-4f61-a3d2-5e8f0c6b1a90'
ATTACHMENT_ID = 'c8a4f0b2-6d1e-4a7b-9f3c-1e2d5b8a0c64'

# cinder.volume.drivers.rbd.RBDDriver (rbd_user = cinder,
# rbd_secret_uuid set, three monitors).
RBD = {
    'driver_volume_type': 'rbd',
    'data': {
        'name': 'volumes/volume-%s' % VOLUME_ID,
        'hosts': ['10.20.0.11', '10.20.0.12', '10.20.0.13'],
        'ports': ['6789', '6789', '6789'],
        'cluster_name': 'ceph',
        'auth_enabled': True,
        'auth_username': 'cinder',
        'secret_type': 'ceph',
        'secret_uuid': SECRET_UUID,
        'volume_id': VOLUME_ID,
        'discard': True,
        'keyring': None,
        'qos_specs': None,
        'access_mode': 'rw',
        'encrypted': False,
        'cacheable': False,
    },
    'status': 'reserved',
    'instance': '8a6b7ab2-5a8f-4a84-9dbd-0f7f3f7ec1f3',
    'attached_at': '',
    'detached_at': '',
    'volume_id': VOLUME_ID,
    'attachment_id': ATTACHMENT_ID,
    'serial': VOLUME_ID,
}

# cinder.volume.drivers.lvm.LVMVolumeDriver with target_helper = lioadm
# (CHAP), one portal; os-brick's ISCSIConnector found the disk by path.
ISCSI = {
    'driver_volume_type': 'iscsi',
    'data': {
        'target_discovered': False,
        'target_portal': '10.20.0.21:3260',
        'target_iqn': 'iqn.2010-10.org.openstack:volume-%s' % VOLUME_ID,
        'target_lun': 0,
        'volume_id': VOLUME_ID,
        'auth_method': 'CHAP',
        'auth_username': 'Qxq5p5Xo2YtFLmPXQjnB',
        'auth_password': 'b7WsmRgA6jpZbfYz',
        'encrypted': False,
        'qos_specs': None,
        'access_mode': 'rw',
        'cacheable': False,
        'device_path': ('/dev/disk/by-path/ip-10.20.0.21:3260-iscsi-'
                        'iqn.2010-10.org.openstack:volume-%s-lun-0'
                        % VOLUME_ID),
    },
    'serial': VOLUME_ID,
}

# A multipath iSCSI array (target_portals/iqns/luns), connected with
# [libvirt] volume_use_multipath: os-brick hands the multipath device.
ISCSI_MULTIPATH = {
    'driver_volume_type': 'iscsi',
    'data': {
        'target_discovered': False,
        'target_portal': '10.30.1.10:3260',
        'target_iqn': 'iqn.2010-06.com.purestorage:flasharray.5e7f1c',
        'target_lun': 1,
        'target_portals': ['10.30.1.10:3260', '10.30.2.10:3260'],
        'target_iqns': ['iqn.2010-06.com.purestorage:flasharray.5e7f1c',
                        'iqn.2010-06.com.purestorage:flasharray.5e7f1c'],
        'target_luns': [1, 1],
        'volume_id': VOLUME_ID,
        'encrypted': False,
        'qos_specs': None,
        'access_mode': 'rw',
        'discard': True,
        'device_path': '/dev/dm-2',
    },
    'serial': VOLUME_ID,
}

# A Fibre Channel array: zoned WWNs and the initiator/target map; os-brick
# found the multipath device and its WWID.
FIBRE_CHANNEL = {
    'driver_volume_type': 'fibre_channel',
    'data': {
        'target_discovered': True,
        'target_lun': 1,
        'target_wwn': ['50060e801049cfd1', '50060e801049cfd2'],
        'initiator_target_map': {
            '21000024ff601234': ['50060e801049cfd1', '50060e801049cfd2']},
        'volume_id': VOLUME_ID,
        'encrypted': False,
        'qos_specs': {'consumer': 'front-end', 'total_iops_sec': '2000',
                      'total_bytes_sec': '104857600'},
        'access_mode': 'rw',
        'discard': True,
        'device_path': '/dev/dm-3',
        'multipath_id': '3600601601234c9d8a0b1c2d3e4f5a6b7',
    },
    'serial': VOLUME_ID,
}

# cinder.volume.drivers.lvm with target_helper = nvmet (NVMe-oF over TCP,
# the new connection properties os-brick 6+ understands).
NVMEOF = {
    'driver_volume_type': 'nvmeof',
    'data': {
        'target_nqn': 'nqn.nvme-subsystem-1-%s' % VOLUME_ID,
        'vol_uuid': VOLUME_ID,
        'portals': [['10.20.0.21', 4420, 'tcp']],
        'volume_id': VOLUME_ID,
        'encrypted': False,
        'qos_specs': None,
        'access_mode': 'rw',
        'discard': True,
        'device_path': '/dev/nvme1n1',
    },
    'serial': VOLUME_ID,
}


def connection(template, **data):
    """A deep copy of ``template`` with ``data`` merged into its data."""
    info = copy.deepcopy(template)
    info['data'].update(data)
    return info
