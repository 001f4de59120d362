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

"""Device role tagging: ``instance.device_metadata``.

A user tags a port or a volume (``"tag": "nfv-data"``) so the guest can
tell its devices apart; Nova publishes the tags, with the device's bus
address in the guest, in the metadata service and the config drive
(``openstack/latest/meta_data.json`` "devices"). As Nova's libvirt driver
builds it, the metadata lists the ports that have a tag or a VLAN (with
their MAC, VLAN and whether their VF is trusted) and the tagged block
devices (with their serial, the volume id), each with the address
libvirt gave the device: it is read from the domain libvirt holds, so
only once the domain is defined.

Unlike Nova's, the bus address of a port realised as a whole PCI
function (a direct-physical port's ``<hostdev>``) is the one the guest
sees, like every other device's, not the function's address on the host.
"""

from nova import block_device
from nova.network import model as network_model
from nova import objects
from nova.virt.libvirt import config as vconfig
from nova.virt import netutils
from oslo_log import log as logging

from nova_kvmx import safe_xml

LOG = logging.getLogger(__name__)

# The object for a disk's <target bus>, when its address is not PCI.
_DISK_BUSES = {'scsi': objects.SCSIDeviceBus, 'ide': objects.IDEDeviceBus,
               'usb': objects.USBDeviceBus}


def refresh(context, instance, domain_xml, network_info=None):
    """Set ``instance.device_metadata`` from the domain (its XML as
    libvirt holds it), the instance's ports (``network_info``, else its
    cached one) and its tagged ports and block devices in Nova's
    database. The caller saves the instance."""
    if network_info is None:
        network_info = instance.get_network_info()
    instance.device_metadata = build(
        domain_xml, network_info,
        objects.VirtualInterfaceList.get_by_instance_uuid(
            context, instance.uuid),
        objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid))


def update(context, instance, guest):
    """Rebuild and save the device metadata of an instance whose devices
    changed, from its domain's definition (a stopped guest's attach
    changes only that)."""
    refresh(context, instance, guest.get_xml_desc(dump_inactive=True))
    instance.save()


def build(domain_xml, network_info, vifs, bdms):
    """The InstanceDeviceMetadata of a domain, None when no device is
    tagged or on a VLAN.

    :param network_info: the instance's ports (VLAN, trust, the host
        PCI function of a direct-physical port)
    :param vifs: its VirtualInterface objects (the ports' tags)
    :param bdms: its BlockDeviceMapping objects (the volumes' tags)
    """
    vlans = netutils.get_cached_vifs_with_vlan(network_info)
    trusted = netutils.get_cached_vifs_with_trusted(network_info)
    exposed = {vif.address: vif for vif in vifs
               if vif.obj_attr_is_set('tag') and vif.tag or
               vlans.get(vif.address)}
    pf_macs = {vif['profile']['pci_slot']: vif['address']
               for vif in network_info or []
               if vif.get('vnic_type') ==
               network_model.VNIC_TYPE_DIRECT_PHYSICAL and
               (vif.get('profile') or {}).get('pci_slot')}
    tagged_disks = {block_device.strip_dev(bdm.device_name): bdm
                    for bdm in bdms
                    if bdm.tag and bdm.device_name}
    found = []
    for dev in safe_xml.fromstring(domain_xml).iterfind('./devices/*'):
        if dev.tag == 'interface':
            mac = dev.find('mac')
            device = _nic(dev, mac.get('address', '').lower()
                          if mac is not None else None, exposed, vlans,
                          trusted)
        elif dev.tag == 'hostdev' and dev.get('type') == 'pci':
            device = _nic(dev, pf_macs.get(_host_address(dev)), exposed,
                          vlans, trusted)
        elif dev.tag == 'disk':
            device = _disk(dev, tagged_disks)
        else:
            device = None
        if device is not None:
            found.append(device)
    return objects.InstanceDeviceMetadata(devices=found) if found else None


def _nic(dev, mac, exposed, vlans, trusted):
    vif = exposed.get(mac)
    if vif is None:
        return None
    device = objects.NetworkInterfaceMetadata(mac=vif.address)
    if vif.obj_attr_is_set('tag') and vif.tag:
        device.tags = [vif.tag]
    bus = _bus(dev)
    if bus is not None:
        device.bus = bus
    if vlans.get(vif.address):
        device.vlan = int(vlans[vif.address])
    device.vf_trusted = trusted.get(vif.address, False)
    return device


def _disk(dev, tagged):
    target = dev.find('target')
    bdm = tagged.get(target.get('dev') if target is not None else None)
    if bdm is None:
        return None
    # The serial is the volume's id: how Nova finds the entry to remove
    # when the volume is detached.
    device = objects.DiskMetadata(tags=[bdm.tag], serial=bdm.volume_id)
    bus = _bus(dev, target.get('bus'))
    if bus is not None:
        device.bus = bus
    return device


def _bus(dev, disk_bus=None):
    """The device's bus in the guest, with its address where Nova's
    objects have one (PCI)."""
    element = dev.find('address')
    address = (vconfig.LibvirtConfigGuestDeviceAddress.parse_dom(element)
               if element is not None else None)
    if isinstance(address, vconfig.LibvirtConfigGuestDeviceAddressPCI):
        return objects.PCIDeviceBus(address=address.format_address())
    if disk_bus in _DISK_BUSES:
        return _DISK_BUSES[disk_bus]()
    return None


def _host_address(hostdev):
    element = hostdev.find('./source/address')
    if element is None:
        return None
    address = vconfig.LibvirtConfigGuestDeviceAddressPCI()
    address.parse_dom(element)
    return address.format_address()
