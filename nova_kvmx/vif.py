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

"""The host side of a guest's ports and passthrough devices.

os-vif plugs the ports it has a plugin for (OVS, vhost-user); an SR-IOV
port's PF-side settings (a macvtap VF's MAC and VLAN, a VF's trust) go
through Nova's own helpers and privsep, as Nova's libvirt driver does them;
libvirt itself sets a ``direct`` VF's MAC and VLAN from the domain XML and
adds a tap to a Linux bridge. Before anything is plugged, every PCI
function the guest takes is looked up in libvirt, so a device that left
the host is an error naming it, not a QEMU failure.
"""

import time

import nova.conf
from nova import exception as nova_exception
from nova.compute import power_state
from nova.network import model as network_model
from nova.network import os_vif_util
from nova.objects import fields
from nova.pci import utils as pci_utils
import nova.privsep.linux_net
from nova.virt import hardware
from nova.virt.libvirt import vif as libvirt_vif
import os_vif
from os_vif import exception as osv_exception
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import strutils

from nova_kvmx import device_metadata
from nova_kvmx import exception
from nova_kvmx.guest import devices
from nova_kvmx.guest import qos
from nova_kvmx.guest import render_devices
from nova_kvmx.host import pci
from nova_kvmx import safe_xml

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

POLL_INTERVAL = 0.5

# What Nova's SR-IOV helpers raise when sysfs or `ip link` disagree.
_HELPER_ERRORS = (nova_exception.PciDeviceNotFoundById,
                  processutils.ProcessExecutionError, OSError)


def load_claims(instance):
    """Make sure the instance's claimed PCI devices are loaded (planning
    does not lazy-load them)."""
    return instance.pci_devices


def vf_netdevs(network_info):
    """{VF PCI address: netdev} of the macvtap ports' VFs (from sysfs);
    a VF without one is left out and the planner names its port."""
    result = {}
    for vif in network_info or []:
        slot = devices.port_pci_slot(vif)
        if slot and vif.get('vnic_type') == network_model.VNIC_TYPE_MACVTAP:
            try:
                result[slot] = pci_utils.get_ifname_by_pci_address(slot)
            except nova_exception.PciDeviceNotFoundById:
                LOG.warning('VF %s of port %s has no netdev', slot,
                            vif['id'])
    return result


def _nodedev_xml(host, address):
    try:
        return host.device_lookup_by_name(
            devices.nodedev_name(address)).XMLDesc(0)
    except libvirt.libvirtError as ex:
        if ex.get_error_code() == libvirt.VIR_ERR_NO_NODE_DEVICE:
            return None
        raise


def check_host_devices(host, passthrough):
    """Raise, naming the device and what it is for, unless libvirt still
    knows every claimed PCI function.

    :param passthrough: [(address, owner, PciDevice)] from
        devices.passthrough_devices
    """
    for address, owner, claimed in passthrough:
        if _nodedev_xml(host, address) is not None:
            continue
        pf_addr = claimed.parent_addr if (
            claimed.dev_type == fields.PciDeviceType.SRIOV_VF) else None
        if pf_addr:
            pf_xml = _nodedev_xml(host, pf_addr)
            pf = pci.device_from_xml(pf_xml) if pf_xml else None
            if pf and pf['dev_type'] != fields.PciDeviceType.SRIOV_PF:
                raise exception.PFWithoutSRIOV(id=address, owner=owner,
                                               pf=pf_addr)
        raise exception.ClaimedDeviceMissing(id=address, owner=owner)


class GuestNetwork(object):
    """Plugs and unplugs a guest's ports; hot-attaches and detaches them."""

    def __init__(self, host, detach_timeout, settings=None):
        """:param settings: returns the host's spec.DriverSettings (None:
            the defaults)"""
        self.host = host
        self.detach_timeout = detach_timeout
        self.settings = settings

    # -- plugging -----------------------------------------------------------

    def plug_all(self, instance, network_info):
        """Plug every port; if one fails, unplug it (a plugin may have
        done part of its work, e.g. os-vif's OVS hybrid plug makes the
        Linux bridge before it talks to OVS) and those plugged before."""
        plugged = []
        try:
            for vif in network_info or []:
                plugged.append(vif)
                self.plug(instance, vif)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.unplug_all(instance, plugged)

    def unplug_all(self, instance, network_info):
        """Unplug every port, going on past failures (logged): a delete
        must not stop half way."""
        for vif in network_info or []:
            try:
                self.unplug(instance, vif)
            except Exception:
                LOG.exception('Could not unplug port %s', vif['id'],
                              instance=instance)

    def plug(self, instance, vif):
        obj = devices.osvif_vif(vif)
        if obj is not None:
            self._set_multiqueue(instance, obj)
            self._os_vif(os_vif.plug, instance, vif, obj)
            return
        slot = devices.port_pci_slot(vif)
        try:
            if vif['type'] == network_model.VIF_TYPE_BRIDGE:
                bridge = vif['network']['bridge']
                if not nova.privsep.linux_net.device_exists(bridge):
                    raise exception.VIFPlugFailed(
                        port_id=vif['id'],
                        reason='bridge %s does not exist on this host' %
                        bridge)
            elif vif['vnic_type'] == network_model.VNIC_TYPE_MACVTAP:
                libvirt_vif.set_vf_interface_vlan(
                    slot, mac_addr=devices.port_mac(vif),
                    vlan=devices.port_vlan(vif) or 0)
            elif (vif['vnic_type'] == network_model.VNIC_TYPE_DIRECT and
                    _trusted(vif)):
                libvirt_vif.set_vf_trusted(slot, True)
        except _HELPER_ERRORS as ex:
            raise exception.VIFPlugFailed(port_id=vif['id'], reason=ex)

    def unplug(self, instance, vif):
        obj = devices.osvif_vif(vif)
        if obj is not None:
            self._os_vif(os_vif.unplug, instance, vif, obj)
            return
        slot = devices.port_pci_slot(vif)
        if vif['vnic_type'] == network_model.VNIC_TYPE_MACVTAP:
            # Nova's rule: a freed VF keeps no guest MAC, so the PF does
            # not keep forwarding that MAC's frames to it.
            libvirt_vif.set_vf_interface_vlan(
                slot, mac_addr='00:00:00:00:00:00')
        elif (vif['vnic_type'] == network_model.VNIC_TYPE_DIRECT and
                'trusted' in (vif.get('profile') or {})):
            libvirt_vif.set_vf_trusted(slot, False)

    @staticmethod
    def _set_multiqueue(instance, obj):
        """os-vif creates a multiqueue tap when the port asks os-vif for
        the tap and the guest asks for multiqueue (as in Nova)."""
        profile = getattr(obj, 'port_profile', None)
        if (profile is not None and 'create_tap' in profile.fields and
                profile.obj_attr_is_set('create_tap') and
                profile.create_tap and 'multiqueue' in profile.fields):
            profile.multiqueue = hardware.get_vif_multiqueue_constraint(
                instance.flavor, instance.image_meta)

    @staticmethod
    def _os_vif(action, instance, vif, obj):
        try:
            action(obj, os_vif_util.nova_to_osvif_instance(instance))
        except osv_exception.ExceptionBase as ex:
            raise exception.VIFPlugFailed(port_id=vif['id'], reason=ex)

    # -- running guests -----------------------------------------------------

    def attach_interface(self, context, instance, image_meta, vif,
                         virt_type):
        """Plug a port and add its device to the guest (live when it
        runs, and to its definition), then record the address libvirt gave
        it in the instance's device metadata (a tagged port's); unplug it
        again if libvirt refuses, detach it if the metadata cannot be
        saved."""
        guest = self.host.get_guest(instance)
        load_claims(instance)
        port = devices.plan_port(vif, instance.flavor, image_meta, virt_type,
                                 vf_netdevs([vif]))
        conf = qos.device_config(port, instance.flavor,
                                 self.settings() if self.settings else None)
        check_host_devices(self.host,
                           devices.passthrough_devices(instance, [vif]))
        self.plug(instance, vif)
        try:
            guest.attach_device(conf, persistent=True,
                                live=self._live(guest))
        except libvirt.libvirtError as ex:
            LOG.error('Attaching port %s failed: %s', vif['id'], ex,
                      instance=instance)
            self.unplug(instance, vif)
            raise nova_exception.InterfaceAttachFailed(
                instance_uuid=instance.uuid) from ex
        try:
            device_metadata.update(context, instance, guest)
        except Exception as ex:
            LOG.exception('Port %s attached, but the device metadata could '
                          'not be updated: detaching it', vif['id'],
                          instance=instance)
            self.detach_interface(context, instance, image_meta, vif,
                                  virt_type)
            raise nova_exception.InterfaceAttachFailed(
                instance_uuid=instance.uuid) from ex
        LOG.info('Port %s attached', vif['id'], instance=instance)

    def detach_interface(self, context, instance, image_meta, vif,
                         virt_type):
        """Remove a port's device from the guest, wait until the guest let
        it go, then unplug the port (also when the detach failed: the
        device must not stay configured for this guest). The port leaves
        the device metadata with its device (the compute manager saves
        the instance)."""
        try:
            guest = self.host.get_guest(instance)
            spec = devices.plan_port(vif, instance.flavor, image_meta,
                                     virt_type, vf_netdevs([vif]))
            self._detach(guest, spec)
        finally:
            self.unplug(instance, vif)
        device_metadata.refresh(context, instance, guest.get_xml_desc(
            dump_inactive=True))
        LOG.info('Port %s detached', vif['id'], instance=instance)

    def detach_live(self, guest, specs):
        """Hot-unplug ``specs``' devices from the running guest only (its
        definition keeps them)."""
        for spec in specs:
            self._detach(guest, spec, persistent=False)

    def attach_live(self, guest, specs):
        for spec in specs:
            guest.attach_device(render_devices.build_device(spec),
                                persistent=False, live=True)

    def _live(self, guest):
        return guest.get_power_state(self.host) in (power_state.RUNNING,
                                                    power_state.PAUSED)

    def _detach(self, guest, spec, persistent=True):
        """Detach ``spec``'s device; a guest may ignore the first unplug
        request (while it boots), so it is repeated until the deadline."""
        conf = render_devices.build_device(spec)
        deadline = time.monotonic() + self.detach_timeout
        while _present(guest.get_xml_desc(), spec):
            if time.monotonic() > deadline:
                raise nova_exception.DeviceDetachFailed(
                    device=_describe(spec),
                    reason='the guest did not release it within %d seconds'
                    % self.detach_timeout)
            guest.detach_device(conf, persistent=persistent,
                                live=self._live(guest))
            # The definition lets go at once: a repeat asks the running
            # guest only (libvirt refuses a device the definition lacks).
            persistent = False
            _wait_gone(guest, spec, min(deadline, time.monotonic() + 5))


def _trusted(vif):
    return strutils.bool_from_string(
        (vif.get('profile') or {}).get('trusted', 'false'))


def _describe(spec):
    if isinstance(spec, devices.HostdevSpec):
        return 'PCI device %s' % spec.address
    return 'interface %s of port %s' % (spec.mac, spec.port_id)


def _present(domain_xml, spec):
    """Whether the domain still has ``spec``'s device: an interface by its
    MAC, a PCI hostdev by its host address."""
    root = devices_root(domain_xml)
    if isinstance(spec, devices.InterfaceSpec):
        return any(mac.get('address', '').lower() == spec.mac
                   for mac in root.findall('./devices/interface/mac'))
    for addr in root.findall("./devices/hostdev[@type='pci']/source/address"):
        found = pci_utils.get_pci_address(*(
            '%0*x' % (width, int(addr.get(name), 16)) for name, width in (
                ('domain', 4), ('bus', 2), ('slot', 2), ('function', 1))))
        if found == spec.address:
            return True
    return False


def devices_root(domain_xml):
    return safe_xml.fromstring(domain_xml)


def _wait_gone(guest, spec, until):
    while time.monotonic() < until and _present(guest.get_xml_desc(), spec):
        time.sleep(POLL_INTERVAL)
