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

"""Interface and hostdev specs -> Nova's libvirt config objects.

Pure, like :mod:`nova_kvmx.guest.render`: the same objects go into a new
domain's XML and into a hot attach or detach on a running one.
"""

from nova.pci import utils as pci_utils
from nova.virt.libvirt import config as vconfig

from nova_kvmx.guest import devices


def build_devices(specs):
    return [build_device(spec) for spec in specs]


def build_device(spec):
    if isinstance(spec, devices.HostdevSpec):
        return build_hostdev(spec)
    return build_interface(spec)


def build_hostdev(spec):
    conf = vconfig.LibvirtConfigGuestHostdevPCI()
    conf.domain, conf.bus, conf.slot, conf.function = \
        pci_utils.get_pci_address_fields(spec.address)
    conf.managed = 'yes' if spec.managed else 'no'
    return conf


def build_interface(spec):
    conf = vconfig.LibvirtConfigGuestInterface()
    conf.net_type = spec.net_type
    conf.mac_addr = spec.mac
    conf.model = spec.model
    conf.driver_name = spec.driver_name
    conf.vhost_queues = spec.queues
    conf.target_dev = spec.target_dev
    conf.mtu = spec.mtu
    if spec.tap_managed is not None:
        conf.managed = 'yes' if spec.tap_managed else 'no'
    if spec.net_type == 'vhostuser':
        conf.vhostuser_type = 'unix'
        conf.vhostuser_mode = spec.source_mode
        conf.vhostuser_path = spec.source
    else:
        conf.source_dev = spec.source
    if spec.net_type == 'direct':
        conf.source_mode = spec.source_mode
    conf.vlan = spec.vlan
    conf.driver_packed = spec.packed
    if spec.ovs_interface_id:
        conf.vporttype = 'openvswitch'
        conf.add_vport_param('interfaceid', spec.ovs_interface_id)
    return conf
