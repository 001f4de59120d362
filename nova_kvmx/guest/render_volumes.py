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

"""Volume disks -> Nova's libvirt config objects.

Pure, like :mod:`nova_kvmx.guest.render`: the same ``<disk>`` goes into a
new domain, a hot attach or detach, and the domain a live migration
hands its destination.
"""

from nova.virt.libvirt import config as vconfig

# The <iotune> child elements -> LibvirtConfigGuestDisk attributes.
_IOTUNE_ATTRS = {
    'total_bytes_sec': 'disk_total_bytes_sec',
    'read_bytes_sec': 'disk_read_bytes_sec',
    'write_bytes_sec': 'disk_write_bytes_sec',
    'total_iops_sec': 'disk_total_iops_sec',
    'read_iops_sec': 'disk_read_iops_sec',
    'write_iops_sec': 'disk_write_iops_sec',
    'read_bytes_sec_max': 'disk_read_bytes_sec_max',
    'read_iops_sec_max': 'disk_read_iops_sec_max',
    'write_bytes_sec_max': 'disk_write_bytes_sec_max',
    'write_iops_sec_max': 'disk_write_iops_sec_max',
    'total_bytes_sec_max': 'disk_total_bytes_sec_max',
    'total_iops_sec_max': 'disk_total_iops_sec_max',
    'size_iops_sec': 'disk_size_iops_sec',
}


def build_volume_disk(disk):
    """LibvirtConfigGuestDisk of a :class:`guest.volumes.VolumeDisk`."""
    conf = vconfig.LibvirtConfigGuestDisk()
    conf.source_type = disk.source_type
    conf.source_device = disk.device
    conf.driver_name = 'qemu'
    conf.driver_format = 'raw'
    conf.driver_cache = disk.cache
    conf.driver_io = disk.io
    if disk.discard:
        conf.driver_discard = 'unmap'
    if disk.source_type == 'network':
        conf.source_protocol = disk.protocol
        conf.source_name = disk.name
        conf.source_hosts = [host for host, _ in disk.hosts]
        conf.source_ports = [port for _, port in disk.hosts]
        conf.auth_username = disk.auth_username
        conf.auth_secret_type = disk.auth_secret_type
        conf.auth_secret_uuid = disk.auth_secret_uuid
    else:
        conf.source_path = disk.path
    conf.target_dev = disk.target_dev
    conf.target_bus = disk.bus
    conf.serial = disk.volume_id
    conf.alias = disk.alias
    conf.readonly = disk.readonly
    conf.shareable = disk.shareable
    for element, value in disk.iotune:
        setattr(conf, _IOTUNE_ATTRS[element], str(value))
    if disk.logical_block_size is not None:
        conf.logical_block_size = str(disk.logical_block_size)
    if disk.physical_block_size is not None:
        conf.physical_block_size = str(disk.physical_block_size)
    return conf
