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

"""The libvirt connection and the checks nova-compute runs at start-up.

The connection is Nova's own :class:`nova.virt.libvirt.host.Host`: it
reconnects when libvirtd restarts, runs libvirt's event loop in a native
thread and forwards lifecycle events (delaying STOPPED during reboots) in
both of Nova's concurrency modes. That is hard, well-tested code we would
otherwise have to copy; we add only the checks this driver needs.
"""

import os

from nova import exception as nova_exception
from nova.virt.libvirt import host as libvirt_host
from oslo_log import log as logging
from oslo_utils import versionutils

from nova_kvmx import exception
from nova_kvmx.host import devices
from nova_kvmx import safe_xml

LOG = logging.getLogger(__name__)

# Nova's own minimums for its libvirt driver (nova 34).
MIN_LIBVIRT_VERSION = (8, 0, 0)
MIN_QEMU_VERSION = (6, 2, 0)


class _StopDispatch(BaseException):
    """Ends the connection-event thread of :class:`Host` (a BaseException
    so that the thread's ``except Exception`` handler lets it through)."""


class Host(libvirt_host.Host):
    """Nova's Host, plus a way to let go of libvirt.

    Nova's ``Host.cleanup`` leaves its connection-event thread running and
    the connection open (a process exit ends both). A compute service that
    is stopped and started again in one process -- every functional test,
    an in-process all-in-one -- needs them gone, or the old driver keeps a
    worker of Nova's default thread pool and libvirt events forever.
    """

    def __init__(self, *args, pci_full_listing_interval=0, **kwargs):
        super().__init__(*args, **kwargs)
        self._pci_report = devices.PCIReport(
            full_listing_interval=pci_full_listing_interval)

    def _connection_closed(self, conn, *args, **kwargs):
        """Nova's, without waiting for the connection lock.

        In Nova's native threading mode this runs on libvirt's event-loop
        thread, from libvirt's close callback. A thread that holds the lock
        while it tests or opens a connection (``Host._get_connection``)
        waits, inside libvirt, for that very event loop: waiting for the
        lock here hung nova-compute for good when libvirtd went away at
        that moment. When the lock is taken, its holder finds the
        connection dead itself and drops it.
        """
        if self._wrapped_conn_lock.acquire(blocking=False):
            try:
                if conn == self._wrapped_conn:
                    self._wrapped_conn = None
            finally:
                self._wrapped_conn_lock.release()
        self._queue_conn_event_handler(*args, **kwargs)

    def _event_emit_delayed(self, event):
        """Nova's, except when no one is there to handle the event: once
        nova-compute has shut its thread pools down (libvirt still reports
        events of every domain on the host until the connection is closed,
        and Nova's executor then raises inside libvirt's event callback,
        which prints a traceback), or on a Host never initialized (a
        command's, in a process whose libvirt event loop runs for another
        Host). Such an event is dropped."""
        if self._delayed_executor is None:
            LOG.debug('Dropped %s: this Host handles no events', event)
            return
        try:
            super()._event_emit_delayed(event)
        except RuntimeError as ex:
            if 'shutdown' not in str(ex):
                raise
            LOG.debug('Dropped %s after shutdown: %s', event, ex)

    @property
    def uri(self):
        return self._uri

    @property
    def pci_report(self):
        """The :class:`nova_kvmx.host.devices.PCIReport` of this host."""
        return self._pci_report

    def pci_devices_json(self):
        """``pci_passthrough_devices`` of the compute node record, kept
        between periodic tasks and refreshed on node-device events."""
        return self._pci_report.json(self.get_connection())

    def get_connection(self):
        """The connection, or LibvirtUnreachable naming the URI (Nova's
        HypervisorUnavailable does not say which libvirt was unreachable)."""
        try:
            return super().get_connection()
        except nova_exception.HypervisorUnavailable as ex:
            raise exception.LibvirtUnreachable(uri=self._uri) from ex

    def close(self):
        """Stop the connection-event thread, the node-device events, the
        delayed lifecycle events and the connection. The thread is told to
        stop first: it occupies a worker of Nova's default pool, and a pool
        being shut down waits for it while the delayed events may wait for
        the pool."""
        if getattr(self, '_closed', False):
            return
        self._closed = True

        def stop():
            raise _StopDispatch()

        self._conn_event_handler_queue.put(stop)
        # No more events once the connection is closed; only then can the
        # delayed ones be cancelled for good.
        with self._wrapped_conn_lock:
            conn, self._wrapped_conn = self._wrapped_conn, None
        # Deregister while the connection is still open.
        self._pci_report.close()
        if conn is not None:
            try:
                conn.close()
            except Exception as ex:
                LOG.debug('Closing the libvirt connection failed: %s', ex)
        try:
            self.cleanup()
        except Exception:
            LOG.exception('Stopping the delayed lifecycle events failed')


def new_host(uri, lifecycle_event_handler=None, conn_event_handler=None,
             pci_full_listing_interval=0):
    return Host(
        uri, lifecycle_event_handler=lifecycle_event_handler,
        conn_event_handler=conn_event_handler,
        pci_full_listing_interval=pci_full_listing_interval)


def _version(ver):
    return '.'.join(str(v) for v in ver)


def check_host(host, virt_type, arch):
    """Refuse to start on a host that cannot run our guests.

    :raises: LibvirtUnreachable when libvirtd cannot be reached,
        HostNotSupported when versions or the virt type do not fit.
    """
    host.get_connection()
    if not host.has_min_version(lv_ver=MIN_LIBVIRT_VERSION):
        raise exception.HostNotSupported(
            reason='libvirt %s or newer is required, this host has %s' % (
                _version(MIN_LIBVIRT_VERSION),
                versionutils.convert_version_to_str(
                    host.get_connection().getLibVersion())))
    domain_types = supported_domain_types(host.get_capabilities(), arch)
    if virt_type not in domain_types:
        hint = ''
        if virt_type == 'kvm' and not os.path.exists('/dev/kvm'):
            hint = (' (/dev/kvm is missing: enable virtualization in the '
                    'BIOS and load the kvm module)')
        raise exception.HostNotSupported(
            reason='[libvirt] virt_type=%s is not offered by libvirt for %s '
                   'guests%s; it offers: %s' % (
                       virt_type, arch, hint,
                       ', '.join(sorted(domain_types)) or 'none'))
    if not host.has_min_version(hv_ver=MIN_QEMU_VERSION):
        raise exception.HostNotSupported(
            reason='QEMU %s or newer is required, this host has %s' % (
                _version(MIN_QEMU_VERSION),
                versionutils.convert_version_to_str(host.get_version())))


def check_spice(host, virt_type, arch):
    """Refuse ``[spice] enabled`` when this host's QEMU has no SPICE
    (distributions build QEMU without it): every guest would fail to
    start.

    :raises: HostNotSupported naming the option
    """
    caps = host.get_connection().getDomainCapabilities(
        None, arch, None, virt_type, 0)
    offered = graphics_types(caps)
    if 'spice' not in offered:
        raise exception.HostNotSupported(
            reason='[spice] enabled is True but the QEMU of this host has '
                   'no SPICE (libvirt offers the graphics: %s); set '
                   '[spice] enabled=False' % (
                       ', '.join(sorted(offered)) or 'none'))


def graphics_types(domcaps_xml):
    """The graphics types (vnc, spice, ...) libvirt's domain
    capabilities offer."""
    root = safe_xml.fromstring(domcaps_xml)
    graphics = root.find('./devices/graphics')
    if graphics is None or graphics.get('supported') != 'yes':
        return set()
    return {value.text for value in graphics.findall(
        "./enum[@name='type']/value")}


def supported_domain_types(caps, arch):
    """Domain types (kvm, qemu, ...) libvirt can run for ``arch`` guests."""
    types = set()
    for guest in caps.guests:
        if guest.arch == arch and guest.ostype == 'hvm':
            types.update(guest.domains)
    return types
