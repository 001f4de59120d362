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

"""The host's PCI devices as libvirt's node devices describe them.

The I/O half of the PCI report: read the ``pci`` and ``net`` node devices
and hand them to :mod:`nova_kvmx.host.pci`. The facts Nova reads from a
function's network interface in sysfs (features, name, MAC) come from the
``net`` node device whose parent is that function.

Listing and parsing a thousand node devices costs hundreds of milliseconds,
and Nova asks for the report every periodic interval, while the devices
change rarely. :class:`PCIReport` keeps what it read and re-reads only the
devices libvirt's node-device events name.
"""

import collections
import re
import threading
import time

from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_kvmx.host import pci

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

LOG = logging.getLogger(__name__)

_PCI_NODEDEV = re.compile(
    r'pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$')


def _net_facts(doc):
    cap = doc.find("capability[@type='net']")
    match = _PCI_NODEDEV.match(doc.findtext('parent') or '')
    if match is None or cap is None:
        return None
    ifname = cap.findtext('interface')
    if not ifname:
        LOG.warning('Skipping net node device %s: its XML has no interface.',
                    doc.findtext('name') or '(unnamed)')
        return None
    address = '%s:%s:%s.%s' % match.groups()
    features = [f.get('name') for f in cap.findall('feature')]
    return address, features, ifname, cap.findtext('address')


def net_facts(xml_string):
    """(PCI address, features, interface name, MAC or None) of a ``net``
    node device; None when its parent is not a PCI function, and with a
    warning naming the device when its XML is not well-formed or lacks the
    interface name."""
    doc = pci.parse(xml_string)
    return _net_facts(doc) if doc is not None else None


def _no_device(ex):
    return ex.get_error_code() == libvirt.VIR_ERR_NO_NODE_DEVICE


class PCIReport:
    """``get_available_resource()['pci_passthrough_devices']``, kept
    between periodic tasks.

    On a connection it has not seen (the first, or a new one after Nova's
    Host reconnected to libvirtd), it registers for node-device lifecycle
    and update events, then lists every ``pci`` and ``net`` node device.
    Registering first means a device that changes during the listing is
    named in an event, and read again in the next period. From then on it
    reads only the devices named in events, and returns the same JSON
    string while none changed. Every ``full_listing_interval`` seconds it
    lists every device all the same: a safety net for changes no event
    told of (libvirt's own missed udev events, a dropped callback).
    Without events (libvirt refuses the registration, e.g. when no event
    loop runs) it lists every device in every period. Devices whose XML
    did not change are never parsed again.
    """

    def __init__(self, events=True, full_listing_interval=0):
        """:param events: False for a one-shot reader (a command runs no
            libvirt event loop): no registration, no warning.
        :param full_listing_interval: seconds; 0 lists everything only on
            a new connection.
        """
        self._want_events = events
        self._full_listing_interval = full_listing_interval
        self._listed_at = None
        # Node-device names from libvirt's event-loop thread. A deque's
        # append and popleft are atomic, so the callbacks take no lock: in
        # Nova's eventlet mode a threading lock is a green one, which a
        # native thread must not take.
        self._events = collections.deque()
        # The periodic task and close() (nova-compute stopping).
        self._lock = threading.Lock()
        self._conn = None
        self._callback_ids = []
        self._xml = {}        # name -> XML, of every device read
        self._functions = {}  # name -> pci.read_function() of a PCI device
        self._netdevs = {}    # name -> _net_facts() of a PCI function's NIC
        self._json = None

    def json(self, conn):
        """The JSON list of Nova's PCI device dicts of the host behind
        ``conn`` (the connection of Nova's Host, as it is now)."""
        with self._lock:
            try:
                self._refresh(conn)
            except Exception:
                # A name taken out of the events may not be read yet: list
                # every device again next time.
                self._deregister()
                raise
            if self._json is None:
                self._json = jsonutils.dumps(self._assemble())
            return self._json

    def pending(self):
        """Names of the node devices that events named and that are not
        read again yet."""
        return set(self._events.copy())

    def close(self):
        """Deregister from the connection's events and forget the devices.
        Call before the connection is closed."""
        with self._lock:
            self._deregister()
            self._xml, self._functions, self._netdevs = {}, {}, {}
            self._json = None

    # -- libvirt's event-loop thread: record the name, nothing else ---------

    def _lifecycle_event(self, conn, dev, event, detail, opaque):
        self._events.append(dev.name())

    def _update_event(self, conn, dev, opaque):
        self._events.append(dev.name())

    # -- the periodic task ----------------------------------------------------

    def _refresh(self, conn):
        if conn is not self._conn:
            self._deregister()
            self._callback_ids = self._register(conn)
            self._conn = conn
            self._events.clear()
            self._walk(conn)
        elif not self._callback_ids or self._listing_due():
            self._events.clear()
            self._walk(conn)
        else:
            names = self._drain()
            pfs = self._pfs_of(names)
            for name in names:
                self._reread(conn, name)
            # A VF that comes or goes changes its PF's virt_functions, which
            # libvirt reads from sysfs when asked, with no event for the PF.
            for name in (pfs | self._pfs_of(names)) - names:
                self._reread(conn, name)

    def _listing_due(self):
        return bool(self._full_listing_interval and
                    time.monotonic() - self._listed_at >=
                    self._full_listing_interval)

    def _register(self, conn):
        ids = []
        if not self._want_events:
            return ids
        try:
            for event_id, callback in (
                    (libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE,
                     self._lifecycle_event),
                    (libvirt.VIR_NODE_DEVICE_EVENT_ID_UPDATE,
                     self._update_event)):
                ids.append(conn.nodeDeviceEventRegisterAny(
                    None, event_id, callback, None))
        # AttributeError: bindings without node-device events (Nova's fake
        # libvirt among them).
        except (libvirt.libvirtError, AttributeError) as ex:
            LOG.warning('libvirt sends no node-device events (%s): every '
                        'PCI and network node device will be read in every '
                        'periodic task.', ex)
            for callback_id in ids:
                conn.nodeDeviceEventDeregisterAny(callback_id)
            return []
        return ids

    def _deregister(self):
        conn, self._conn = self._conn, None
        ids, self._callback_ids = self._callback_ids, []
        for callback_id in ids:
            try:
                conn.nodeDeviceEventDeregisterAny(callback_id)
            except libvirt.libvirtError as ex:  # a connection gone
                LOG.debug('Deregistering node-device events failed: %s', ex)
        self._events.clear()

    def _drain(self):
        names = set()
        while self._events:
            names.add(self._events.popleft())
        return names

    def _pfs_of(self, names):
        """Node-device names of the PFs of the VFs among ``names``."""
        pfs = set()
        for name in names:
            parent = self._functions.get(name, (None, {}))[1].get(
                'parent_addr')
            if parent:
                pfs.add('pci_' + parent.replace(':', '_').replace('.', '_'))
        return pfs

    def _walk(self, conn):
        self._listed_at = time.monotonic()
        seen = set()
        for cap in (libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV,
                    libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET):
            for dev in conn.listAllDevices(cap):
                name = dev.name()
                try:
                    xml = dev.XMLDesc(0)
                except libvirt.libvirtError as ex:
                    if not _no_device(ex):
                        raise
                    continue  # gone since the listing
                seen.add(name)
                self._store(name, xml)
        for name in set(self._xml) - seen:
            self._forget(name)

    def _reread(self, conn, name):
        try:
            xml = conn.nodeDeviceLookupByName(name).XMLDesc(0)
        except libvirt.libvirtError as ex:
            if not _no_device(ex):
                raise
            self._forget(name)
        else:
            self._store(name, xml)

    def _store(self, name, xml):
        """Keep the facts of a PCI function or of its network interface,
        and every device's XML, to skip it while it does not change."""
        if self._xml.get(name) == xml:
            return
        self._forget(name)
        self._xml[name] = xml
        doc = pci.parse(xml, name)
        if doc is None:
            return
        if pci.is_function(doc):
            facts, kept = pci.read_function(doc), self._functions
        else:
            facts, kept = _net_facts(doc), self._netdevs
        if facts is not None:
            kept[name] = facts
            self._json = None

    def _forget(self, name):
        self._xml.pop(name, None)
        if (self._functions.pop(name, None) or
                self._netdevs.pop(name, None)) is not None:
            self._json = None

    def _assemble(self):
        features, ifnames, macs = {}, {}, {}
        for address, feats, ifname, mac in self._netdevs.values():
            features[address], ifnames[address] = feats, ifname
            if mac:
                macs[address] = mac
        return pci.assemble(list(self._functions.values()), features,
                            ifnames, macs)
