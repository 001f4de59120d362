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

"""Nova's ports and claimed PCI devices -> interface and hostdev specs.

Pure: no libvirt, no sysfs, no CONF. Ports come as Nova's network_info;
those os-vif knows are converted by Nova's own
``nova.network.os_vif_util.nova_to_osvif_vif`` and described from the
os-vif object, the SR-IOV ones (Nova's "legacy" VIF types, which os-vif
does not handle) from the port's binding. PCI devices are the ones Nova's
PCI tracker claimed (``instance.pci_devices``); a port's PCI device must be
one of them, so the guest gets exactly what Nova claimed.
"""

import dataclasses
import os
import re

from nova import exception as nova_exception
from nova.network import model as network_model
from nova.network import os_vif_util
from nova.pci import utils as pci_utils
from nova.virt import hardware
from nova.virt.libvirt import vif as libvirt_vif
from os_vif import objects as osv_objects
from oslo_utils import netutils

from nova_kvmx import exception
from nova_kvmx.guest import hwdevices

# os-vif's object classes (os_vif.initialize() would also load the plugins,
# which planning does not need).
osv_objects.register_all()

VIRTIO = network_model.VIF_MODEL_VIRTIO

# The vnic_types nova-kvmx wires for each VIF type. os-vif plugs the
# OS_VIF_TYPES; the SR-IOV ports and Linux bridge are wired by libvirt
# (with Nova's helpers for the PF side).
OS_VIF_TYPES = (network_model.VIF_TYPE_OVS, network_model.VIF_TYPE_VHOSTUSER)
SUPPORTED = {
    network_model.VIF_TYPE_OVS: (
        network_model.VNIC_TYPE_NORMAL, network_model.VNIC_TYPE_DIRECT),
    network_model.VIF_TYPE_VHOSTUSER: (
        network_model.VNIC_TYPE_NORMAL,
        network_model.VNIC_TYPE_VIRTIO_FORWARDER),
    network_model.VIF_TYPE_BRIDGE: (network_model.VNIC_TYPE_NORMAL,),
    network_model.VIF_TYPE_HW_VEB: (
        network_model.VNIC_TYPE_DIRECT, network_model.VNIC_TYPE_MACVTAP),
    network_model.VIF_TYPE_HOSTDEV: (
        network_model.VNIC_TYPE_DIRECT_PHYSICAL,),
}
# Every vnic_type Neutron defines (nova.network.model); others are refused
# as unknown rather than as unsupported.
KNOWN_VNIC_TYPES = frozenset(
    (network_model.VNIC_TYPE_NORMAL, network_model.VNIC_TYPE_BAREMETAL) +
    network_model.VNIC_TYPES_SRIOV + network_model.VNIC_TYPES_ACCELERATOR)


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    """A guest NIC: libvirt's ``<interface type=net_type>``."""

    port_id: str
    mac: str
    # bridge, ethernet, vhostuser, hostdev (a VF) or direct (macvtap)
    net_type: str
    # the bridge, VF PCI address, VF netdev or vhost-user socket
    source: str | None = None
    target_dev: str | None = None
    model: str | None = VIRTIO
    driver_name: str | None = None
    queues: int | None = None
    mtu: int | None = None
    vlan: int | None = None
    # direct: 'passthrough'; vhostuser: 'client' or 'server'
    source_mode: str | None = None
    # False: the tap exists before the guest (libvirt managed='no')
    tap_managed: bool | None = None
    # <virtualport type='openvswitch'> with this interfaceid
    ovs_interface_id: str | None = None
    # <driver packed='on'>: the virtio packed ring (hw:virtio_packed_ring)
    packed: bool = False


@dataclasses.dataclass(frozen=True)
class HostdevSpec:
    """A whole PCI function given to the guest: ``<hostdev type='pci'>``."""

    address: str
    managed: bool = True
    # the direct-physical port it realises, None for a flavor alias device
    port_id: str | None = None


def pci_address(address):
    """The canonical form ('0000:81:00.1') of a PCI address, lower case;
    PciDeviceWrongAddressFormat for anything else (Nova's own parser)."""
    return pci_utils.get_pci_address(
        *pci_utils.parse_address(address.lower()))


def nodedev_name(address):
    """libvirt's node device name of a PCI function ('pci_0000_81_00_1')."""
    domain, bus, slot, function = pci_utils.parse_address(
        pci_address(address))
    return 'pci_%s_%s_%s_%s' % (domain, bus, slot, function)


def needs_shared_memory(devices):
    """True when a device needs the guest RAM shared with another process
    (vhost-user: the switch reads the guest's memory directly), i.e.
    ``<memoryBacking><access mode='shared'/>`` with file or hugepage
    backed memory."""
    return any(isinstance(d, InterfaceSpec) and d.net_type == 'vhostuser'
               for d in devices)


def is_host_device(spec):
    """True for a spec that gives the guest a host PCI function (a PF, a
    VF or an alias device), which libvirt assigns through VFIO."""
    return isinstance(spec, HostdevSpec) or spec.net_type == 'hostdev'


def osvif_vif(vif):
    """Nova's os-vif object for a port os-vif plugs, else None."""
    if vif['type'] not in OS_VIF_TYPES:
        return None
    return os_vif_util.nova_to_osvif_vif(vif)


def port_pci_slot(vif):
    """The PCI address of a port's device (a VF or PF), or None."""
    slot = (vif.get('profile') or {}).get('pci_slot')
    return pci_address(slot) if slot else None


def check_supported(vif):
    """Refuse, naming the port, a vnic_type Neutron does not define or a
    VIF type / vnic_type pair this driver does not wire."""
    vif_type = vif.get('type')
    vnic_type = vif.get('vnic_type') or network_model.VNIC_TYPE_NORMAL
    if vnic_type not in KNOWN_VNIC_TYPES:
        raise exception.UnknownVnicType(vnic_type=vnic_type,
                                        port_id=vif['id'])
    if vnic_type not in SUPPORTED.get(vif_type, ()):
        raise exception.UnsupportedVIFType(
            vif_type='%s (vnic_type %s)' % (vif_type, vnic_type),
            port_id=vif['id'])


def frontend(vif, flavor, image_meta, virt_type):
    """(model, driver name, queues) of a virtual NIC, as Nova's libvirt
    driver picks them: the image's ``hw_vif_model`` (virtio by default),
    vhost with one queue per vCPU when ``hw_vif_multiqueue_enabled``, and
    QEMU's own backend under TCG."""
    model = image_meta.properties.get('hw_vif_model', VIRTIO)
    if not libvirt_vif.is_vif_model_valid_for_virt(virt_type, model):
        raise nova_exception.UnsupportedHardware(model=model, virt=virt_type)
    if model != VIRTIO:
        return model, None, None
    if virt_type == 'qemu':
        return model, 'qemu', None
    if hardware.get_vif_multiqueue_constraint(flavor, image_meta):
        return model, 'vhost', flavor.vcpus
    return model, None, None


def _os_vif_netdev(vif, obj, field, what):
    """The os-vif object's device name ``field``, checked; None if the
    object has none."""
    if field in obj.fields and obj.obj_attr_is_set(field):
        return port_netdev(vif, getattr(obj, field), what)
    return None


def _os_vif_interface(vif, obj, frontend_conf):
    model, driver, queues = frontend_conf
    base = dict(port_id=vif['id'], mac=port_mac(vif), model=model,
                driver_name=driver, queues=queues)
    mtu = vif['network'].get_meta('mtu') if vif.get('network') else None
    # Checked whether or not they end up in the domain: os-vif plugs into
    # the bridge and names the tap.
    tap = _os_vif_netdev(vif, obj, 'vif_name', 'tap')
    bridge = _os_vif_netdev(vif, obj, 'bridge_name', 'bridge')
    if isinstance(obj, osv_objects.vif.VIFBridge):
        # OVS hybrid plug: os-vif made the Linux bridge (qbr...) and its
        # veth pair into OVS; libvirt adds the guest's tap to the bridge.
        return InterfaceSpec(net_type='bridge', source=bridge,
                             target_dev=tap, mtu=mtu, **base)
    if isinstance(obj, osv_objects.vif.VIFOpenVSwitch):
        profile = obj.port_profile
        if profile.obj_attr_is_set('create_tap') and profile.create_tap:
            return InterfaceSpec(net_type='ethernet', target_dev=tap,
                                 tap_managed=False, mtu=mtu, **base)
        if profile.obj_attr_is_set('create_port') and profile.create_port:
            return InterfaceSpec(net_type='ethernet', target_dev=tap,
                                 mtu=mtu, **base)
        return InterfaceSpec(net_type='bridge', source=bridge,
                             target_dev=tap, mtu=mtu,
                             ovs_interface_id=profile.interface_id, **base)
    if isinstance(obj, osv_objects.vif.VIFVHostUser):
        base['driver_name'] = None
        return InterfaceSpec(net_type='vhostuser',
                             source=port_socket(vif, obj.path),
                             source_mode=obj.mode, target_dev=tap, **base)
    if isinstance(obj, osv_objects.vif.VIFHostDevice):
        # A VF whose representor os-vif plugs (OVS hardware offload).
        return InterfaceSpec(port_id=vif['id'], mac=port_mac(vif),
                             net_type='hostdev', model=None,
                             source=pci_address(obj.dev_address))
    raise exception.UnsupportedVIFType(vif_type=obj.obj_name(),
                                       port_id=vif['id'])


def port_vlan(vif):
    """The VLAN id of an SR-IOV port's binding, None for none (0, unset);
    InvalidPortBinding, naming the port, for anything but 0-4094."""
    vlan = (vif.get('details') or {}).get(network_model.VIF_DETAILS_VLAN)
    try:
        vlan = int(vlan or 0)
    except (TypeError, ValueError):
        vlan = -1
    if not 0 <= vlan <= 4094:
        raise exception.InvalidPortBinding(
            port_id=vif['id'], reason='VLAN %r is not 0-4094' % (
                vif['details'][network_model.VIF_DETAILS_VLAN],))
    return vlan or None


# A network device name Linux (dev_valid_name: under IFNAMSIZ, no '/', ':'
# or white space, not '.' or '..') and libvirt's schema both accept.
_NETDEV_NAME = re.compile(r'(?!\.\.?$)[a-zA-Z0-9_.-]{1,15}')


def port_netdev(vif, name, what):
    """``name`` (a bridge or tap from the port's binding, or None) if it
    can only name a network device, never a path or markup; else
    InvalidPortBinding naming the port."""
    if name is not None and not _NETDEV_NAME.fullmatch(name):
        raise exception.InvalidPortBinding(
            port_id=vif['id'], reason='%s name %r is not a network device '
            'name' % (what, name))
    return name


def port_socket(vif, path):
    """A vhost-user socket path from the binding: absolute and normalised
    (no '..' leading elsewhere), printable; else InvalidPortBinding."""
    if not (path.startswith('/') and os.path.normpath(path) == path and
            path.isprintable()):
        raise exception.InvalidPortBinding(
            port_id=vif['id'], reason='vhost-user socket %r is not an '
            'absolute, normalised path' % (path,))
    return path


def port_mac(vif):
    """The port's MAC, lower case; InvalidPortBinding for a malformed or
    multicast one (a guest NIC or VF cannot use it)."""
    mac = str(vif.get('address') or '').lower()
    if not netutils.is_valid_mac(mac) or int(mac[:2], 16) & 1:
        raise exception.InvalidPortBinding(
            port_id=vif['id'], reason='MAC address %r is not a unicast MAC'
            % (vif.get('address'),))
    return mac


def packed_ring(flavor, image_meta):
    """``hw:virtio_packed_ring`` / ``hw_virtio_packed_ring`` (Nova's
    ``get_packed_virtqueue_constraint``, FlavorImageConflict when they
    disagree); a flavor value Nova's API refuses gets its message."""
    value = flavor.extra_specs.get('hw:virtio_packed_ring')
    if value is not None:
        hwdevices.validate_flavor_value('hw:virtio_packed_ring', value)
    return hardware.get_packed_virtqueue_constraint(flavor, image_meta)


def plan_port(vif, flavor, image_meta, virt_type, vf_netdevs=None):
    """The InterfaceSpec or HostdevSpec of one port; a virtio NIC with
    the packed ring when the flavor or image asks (Nova sets it on the
    NIC's <driver>).

    :param vif: nova.network.model.VIF
    :param vf_netdevs: {VF PCI address: its netdev}, for macvtap ports
    """
    result = _plan_port(vif, flavor, image_meta, virt_type, vf_netdevs)
    if (isinstance(result, InterfaceSpec) and result.model == VIRTIO and
            packed_ring(flavor, image_meta)):
        result = dataclasses.replace(result, packed=True)
    return result


def _plan_port(vif, flavor, image_meta, virt_type, vf_netdevs=None):
    check_supported(vif)
    # Before os-vif's conversion, which raises a bare ValueError for it.
    port_mac(vif)
    vif_type, vnic_type = vif['type'], vif['vnic_type']
    conf = frontend(vif, flavor, image_meta, virt_type)
    obj = osvif_vif(vif)
    if obj is not None:
        return _os_vif_interface(vif, obj, conf)
    if vif_type == network_model.VIF_TYPE_BRIDGE:
        # Nova no longer converts Linux bridge ports for os-vif and os-vif
        # no longer has the plugin: libvirt adds the tap to the bridge
        # Neutron's agent made.
        model, driver, queues = conf
        network = vif['network']
        return InterfaceSpec(
            port_id=vif['id'], mac=port_mac(vif), net_type='bridge',
            source=port_netdev(vif, network['bridge'], 'bridge'),
            target_dev=port_netdev(vif, vif.get('devname'), 'tap'),
            model=model, driver_name=driver, queues=queues,
            mtu=network.get_meta('mtu'))
    slot = port_pci_slot(vif)
    if slot is None:
        raise exception.PortWithoutDevice(port_id=vif['id'],
                                          vnic_type=vnic_type)
    if vif_type == network_model.VIF_TYPE_HOSTDEV:
        return HostdevSpec(address=slot, port_id=vif['id'])
    if vnic_type == network_model.VNIC_TYPE_DIRECT:
        # libvirt sets the port's MAC and VLAN on the VF through its PF.
        return InterfaceSpec(port_id=vif['id'], mac=port_mac(vif),
                             net_type='hostdev', source=slot, model=None,
                             vlan=port_vlan(vif))
    netdev = (vf_netdevs or {}).get(slot)
    if netdev is None:
        raise exception.PortWithoutDevice(port_id=vif['id'],
                                          vnic_type=vnic_type)
    # macvtap: the VLAN is set on the VF by the plug (as Nova does).
    return InterfaceSpec(port_id=vif['id'], mac=port_mac(vif),
                         net_type='direct', source=netdev,
                         source_mode='passthrough', model=VIRTIO,
                         driver_name='vhost')


def claimed_devices(instance):
    """The PciDevices Nova claimed for the instance. Not lazy-loaded here
    (planning reads no database): the I/O side loads them first."""
    if not instance.obj_attr_is_set('pci_devices') or \
            instance.pci_devices is None:
        return []
    return list(instance.pci_devices)


def claimed_device(instance, address, port_id):
    """The PciDevice Nova claimed for the instance at ``address``; raises
    UnclaimedDevice (naming the port) when there is none."""
    for dev in claimed_devices(instance):
        if pci_address(dev.address) == address:
            return dev
    raise exception.UnclaimedDevice(address=address,
                                    owner='port %s' % port_id)


def alias_devices(instance, network_info):
    """The claimed devices that are not a port's: those of the flavor's
    ``pci_passthrough:alias`` requests."""
    port_slots = {port_pci_slot(vif) for vif in network_info or []}
    return [dev for dev in claimed_devices(instance)
            if pci_address(dev.address) not in port_slots]


def plan_devices(instance, image_meta, virt_type, network_info=None,
                 vf_netdevs=None):
    """All the NICs and passthrough devices of the guest, in order: the
    ports as in network_info, then the flavor's PCI devices.

    Every port's PCI device must be one Nova claimed for the instance. A
    device_spec's ``managed: no`` is kept (Nova's tracker stores it in the
    device's extra_info).
    """
    result = []
    for vif in network_info or []:
        result.append(plan_port(vif, instance.flavor, image_meta, virt_type,
                                vf_netdevs))
        slot = port_pci_slot(vif)
        if slot is not None:
            claimed_device(instance, slot, vif['id'])
    for dev in alias_devices(instance, network_info):
        result.append(HostdevSpec(
            address=pci_address(dev.address),
            managed=dev.extra_info.get('managed', 'true') != 'false'))
    return tuple(result)


def passthrough_devices(instance, network_info=None):
    """[(PCI address, owner, claimed PciDevice)] of every function the
    guest takes from the host: the ports' VFs/PFs and the flavor's
    devices; what the host must still have for the guest to start."""
    result = []
    for vif in network_info or []:
        slot = port_pci_slot(vif)
        if slot is not None:
            result.append((slot, 'port %s' % vif['id'],
                           claimed_device(instance, slot, vif['id'])))
    for dev in alias_devices(instance, network_info):
        result.append((pci_address(dev.address),
                       'the flavor\'s PCI alias request', dev))
    return result
