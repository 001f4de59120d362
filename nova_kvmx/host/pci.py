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

"""The host's PCI devices, as Nova's PCI tracker sees them.

Nova's PCI tracker matches ``[pci] device_spec`` and claims against the
list of dicts a driver reports in ``get_available_resource()
['pci_passthrough_devices']``, so this must report what Nova's libvirt
driver reports for the same node devices (``Host._get_pcidev_info``):
``dev_id``, ``address``, ``vendor_id``, ``product_id``, ``numa_node``,
``label``, ``dev_type`` (``parent_addr`` for a VF) and the optional
``capabilities`` and PF ``mac_address``. Pure: node-device XML (as
``virsh nodedev-dumpxml`` prints it) and facts of the functions' network
interfaces come in as arguments; XML is read by Nova's own
``LibvirtConfigNodeDevice*`` classes.

Nova reads some facts from sysfs; here the caller passes them, keyed by
the PCI function's address ('0000:81:00.0'), as it can read them all from
the function's ``net`` node device (``<capability type='net'>``):

- ``net_features_by_pci_addr``: the ``<feature name=...>`` list of the
  function's netdev. A key marks a function that has a netdev. A VF's
  features are its ``capabilities['network']`` (Nova reads the VF's own
  netdev, not its PF's).
- ``ifname_by_pci_addr``: the function's interface name (``<interface>``).
  A VF with a netdev gets its PF's as ``parent_ifname``.
- ``mac_by_pci_addr``: the function's MAC (``<address>``). A PF gets its
  own as ``mac_address``; a VF gets its PF's, with its VF number, as
  ``capabilities['sriov']``.

Where we differ from Nova's driver, deliberately:

- A device whose XML lacks its address, vendor or product, or is not
  well-formed, is skipped with a warning naming it; Nova raises from the
  periodic task and reports no device at all.
- The VF number (``capabilities['sriov']['vf_num']``) is the VF's place in
  its PF's ``virt_functions`` list, which libvirt builds in ``virtfnN``
  order (Nova reads the ``virtfnN`` links); so it is known only when the PF
  is among the devices, and ``capabilities['sriov']`` is left out without
  it, as Nova leaves it out without the PF's MAC.
- vDPA devices are not reported as ``type-VDPA``: their VFs are ``type-VF``.
"""

from lxml import etree
from nova.objects import fields
from nova.virt.libvirt import config as vconfig
from oslo_log import log as logging

from nova_kvmx import safe_xml

LOG = logging.getLogger(__name__)


def _address(domain, bus, slot, function):
    return '%04x:%02x:%02x.%x' % (domain, bus, slot, function)


def _missing(cap):
    names = ('domain', 'bus', 'slot', 'function', 'vendor_id', 'product_id')
    return [n for n in names if getattr(cap, n) is None]


def _fun_cap(cap, cap_type):
    return next((f for f in cap.fun_capability if f.type == cap_type), None)


def _serial(cap):
    vpd = cap.vpd_capability
    return vpd.card_serial_number if vpd is not None else None


def _base(cfgdev):
    cap = cfgdev.pci_capability
    device = {
        'dev_id': cfgdev.name,
        'address': _address(cap.domain, cap.bus, cap.slot, cap.function),
        'product_id': '%04x' % cap.product_id,
        'vendor_id': '%04x' % cap.vendor_id,
        'numa_node': cap.numa_node,
    }
    device['label'] = 'label_%(vendor_id)s_%(product_id)s' % device
    for fun_cap in cap.fun_capability:
        # First match wins, as in Nova. A PF with no VF enabled still has
        # an (empty) virt_functions capability, with maxCount.
        if fun_cap.type == 'virt_functions':
            device['dev_type'] = fields.PciDeviceType.SRIOV_PF
            return device
        if fun_cap.type == 'phys_function' and fun_cap.device_addrs:
            device['dev_type'] = fields.PciDeviceType.SRIOV_VF
            device['parent_addr'] = _address(*fun_cap.device_addrs[0])
            return device
    device['dev_type'] = fields.PciDeviceType.STANDARD
    return device


def _finish(device, serial, vf_num, net_features, ifnames, macs):
    """Add the optional keys, in Nova's rules.

    :param serial: the device's VPD serial number, or for a VF without one
        its PF's
    :param vf_num: for a VF, its place in its PF's ``virt_functions``, if
        known
    """
    address, caps = device['address'], {}
    if device['dev_type'] == fields.PciDeviceType.SRIOV_VF:
        pf_addr = device['parent_addr']
        if address in net_features:
            if pf_addr in ifnames:
                device['parent_ifname'] = ifnames[pf_addr]
            if net_features[address]:
                caps['network'] = list(net_features[address])
        if pf_addr in macs and vf_num is not None:
            caps['sriov'] = {'pf_mac_address': macs[pf_addr],
                             'vf_num': vf_num}
    if serial:
        caps['vpd'] = {'card_serial_number': serial}
    if caps:
        device['capabilities'] = caps
    if (device['dev_type'] == fields.PciDeviceType.SRIOV_PF and
            address in macs):
        device['mac_address'] = macs[address]
    return device


def _vf_nums(pf_cap):
    """{VF address: VF number} of a PF's ``virt_functions``."""
    vfs = _fun_cap(pf_cap, 'virt_functions')
    return {_address(*a): n
            for n, a in enumerate(vfs.device_addrs if vfs else ())}


def parse(xml_string, name=None):
    """The lxml root of a node device's XML, or None, with a warning
    naming the device, when the XML is not well-formed."""
    try:
        return safe_xml.fromstring(xml_string)
    except (etree.XMLSyntaxError, TypeError, ValueError) as ex:
        LOG.warning('Skipping node device %s: its XML is not well-formed: '
                    '%s', name or '(unnamed)', ex)
        return None


def is_function(doc):
    """Whether a parsed node device is a PCI function. Nova's parser reads
    ``<capability type='net'>`` into ``pci_capability`` too: only the
    document's own capability type tells."""
    return doc.find("capability[@type='pci']") is not None


def read_function(doc):
    """(PCI capability, base dict) of a parsed PCI node device, for
    :func:`assemble`; None, with a warning naming the device, for one that
    cannot be reported."""
    name = doc.findtext('name') or '(unnamed)'
    cfgdev = vconfig.LibvirtConfigNodeDevice()
    try:
        cfgdev.parse_dom(doc)
    except (TypeError, ValueError) as ex:
        LOG.warning('Skipping PCI node device %s: its XML cannot be read: '
                    '%s', name, ex)
        return None
    missing = _missing(cfgdev.pci_capability)
    if missing:
        LOG.warning('Skipping PCI node device %s: its XML has no %s.',
                    name, ', '.join(missing))
        return None
    return cfgdev.pci_capability, _base(cfgdev)


def assemble(functions, net_features_by_pci_addr=None,
             ifname_by_pci_addr=None, mac_by_pci_addr=None):
    """Nova's PCI device dicts of the functions from :func:`read_function`,
    in their order. The functions are left as they are, so that a caller
    can keep them and assemble again when some of them change.

    Other parameters as :func:`device_from_xml`.
    """
    caps = {device['address']: cap for cap, device in functions}
    vf_nums = {}  # of each PF, computed once
    result = []
    for cap, device in functions:
        pf_addr = device.get('parent_addr')
        pf, vf_num = caps.get(pf_addr), None
        if pf is not None:
            if pf_addr not in vf_nums:
                vf_nums[pf_addr] = _vf_nums(pf)
            vf_num = vf_nums[pf_addr].get(device['address'])
        serial = _serial(cap)
        if not serial and pf is not None:
            # A VF may not expose VPD (a firmware setting): its card's
            # serial number is then its PF's, as in Nova.
            serial = _serial(pf)
        result.append(_finish(
            dict(device), serial, vf_num, net_features_by_pci_addr or {},
            ifname_by_pci_addr or {}, mac_by_pci_addr or {}))
    return result


def device_from_xml(xml_string, net_features_by_pci_addr=None,
                    ifname_by_pci_addr=None, mac_by_pci_addr=None):
    """Nova's PCI device dict of one node device, or None.

    None for a device that is not a PCI function (a netdev, an mdev, ...)
    and, with a warning, for one that cannot be reported. A VF reported
    alone lacks what only its PF's XML tells: its VF number, and its PF's
    VPD serial number; :func:`devices_from_xml` has them.

    :param xml_string: a ``<device>`` document of ``virNodeDeviceGetXMLDesc``
    :param net_features_by_pci_addr: {address: [feature, ...]} of the
        functions that have a netdev (see the module's doc)
    :param ifname_by_pci_addr: {address: interface name}
    :param mac_by_pci_addr: {address: MAC address}
    """
    devices = devices_from_xml(
        [xml_string], net_features_by_pci_addr, ifname_by_pci_addr,
        mac_by_pci_addr)
    return devices[0] if devices else None


def devices_from_xml(xml_strings, net_features_by_pci_addr=None,
                     ifname_by_pci_addr=None, mac_by_pci_addr=None):
    """Nova's PCI device dicts of the PCI functions among the node devices,
    in their order; other devices are ignored and devices that cannot be
    reported are skipped with a warning. Never raises for a device's XML:
    this runs in Nova's periodic resource update.

    Parameters as :func:`device_from_xml`.
    """
    docs = [doc for doc in map(parse, xml_strings)
            if doc is not None and is_function(doc)]
    return assemble([f for f in map(read_function, docs) if f is not None],
                    net_features_by_pci_addr, ifname_by_pci_addr,
                    mac_by_pci_addr)
