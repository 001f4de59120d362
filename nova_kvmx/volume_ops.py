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

"""Volumes of existing guests: attach, detach, extend, swap, and the
device names Nova stores for them.

As Nova's libvirt driver does it: an attach connects the volume on the
host, then adds the disk to the domain (live when it runs, and to its
definition); a detach removes it from the definition, then from the
running guest, waiting for libvirt's ``device-removed`` event and asking
again (``[libvirt] device_detach_attempts`` times, each waiting
``device_detach_timeout`` seconds) before giving up with
``DeviceDetachFailed``, and only then disconnects the host. Whatever
fails leaves the guest as it was and nothing connected half-way.
"""

import itertools
import time

from lxml import etree
import nova.conf
from nova.compute import power_state
from nova import exception as nova_exception
from nova.virt.libvirt import event as libvirtevent
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from nova_kvmx import device_metadata
from nova_kvmx.guest import disk_names
from nova_kvmx.guest import render_volumes
from nova_kvmx.guest import volumes as guest_volumes
from nova_kvmx import safe_xml

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
_DETACH_EVENTS = (libvirtevent.DeviceRemovedEvent,
                  libvirtevent.DeviceRemovalFailedEvent)


class VolumeOperations(object):
    def __init__(self, host, volumes, device_events, copy_timeout=600):
        """:param volumes: host_volumes.HostVolumes
        :param device_events: host.device_events.DeviceEvents
        :param copy_timeout: seconds a swap's copy may take to get in sync
        """
        self.host = host
        self.volumes = volumes
        self.events = device_events
        self.copy_timeout = copy_timeout

    def _live(self, guest):
        return guest.get_power_state(self.host) in (power_state.RUNNING,
                                                    power_state.PAUSED)

    # -- device names (the BDMs' device_name) -------------------------------

    @staticmethod
    def default_root_device_name(instance, image_meta, root_bdm):
        device_type = (root_bdm.get('device_type') if root_bdm else None) \
            or 'disk'
        bus = disk_names.choose_bus(
            root_bdm.get('disk_bus') if root_bdm else None, None,
            disk_names.image_bus(image_meta, device_type))
        return '/dev/' + disk_names.next_free(bus, set())

    @staticmethod
    def default_device_names(instance, root_device_name, *bdm_lists):
        """Name every block device mapping of a new instance, as Nova's
        libvirt driver does (names asked for are not honoured: the guest
        decides them): the root disk gets ``root_device_name``, the
        ephemeral and swap disks the next names of the image's bus, the
        volumes the next names of theirs."""
        root = disk_names.strip(root_device_name)
        used = {root, disk_names.CONFIG_DRIVE_DEV}
        local_bus = disk_names.image_bus(instance.image_meta)
        for bdm in itertools.chain(*bdm_lists):
            if bdm.device_name:
                LOG.info('Ignoring supplied device name: %s. The guest '
                         'names its disks itself', bdm.device_name,
                         instance=instance)
            device_type = bdm.device_type or 'disk'
            if bdm.boot_index == 0:
                name = root
                bus = disk_names.choose_bus(
                    bdm.disk_bus, root,
                    disk_names.image_bus(instance.image_meta, device_type))
            elif bdm.destination_type == 'local':
                bus = local_bus
                name = disk_names.next_free(bus, used)
            else:
                bus = disk_names.choose_bus(
                    bdm.disk_bus, None,
                    disk_names.image_bus(instance.image_meta, device_type))
                name = disk_names.next_free(
                    bus, used, CONF.compute.max_disk_devices_to_attach)
            used.add(name)
            bdm.device_name = '/dev/' + name
            bdm.disk_bus = bus
            bdm.device_type = device_type
            bdm.save()

    def device_name_for(self, instance, bdms, bdm):
        """The name of a volume about to be attached: the first free on its
        bus, past every disk the instance has (its mappings' and, if the
        domain exists, the domain's)."""
        if bdm.get('device_name', None):
            LOG.info('Ignoring supplied device name: %s', bdm.device_name,
                     instance=instance)
        own_id = bdm.id if bdm.obj_attr_is_set('id') else None
        used = {disk_names.strip(other.device_name) for other in bdms
                if other.device_name and (own_id is None or
                                          other.id != own_id)}
        used.add(disk_names.CONFIG_DRIVE_DEV)
        try:
            used.update(d.target_dev for d in
                        self.host.get_guest(instance).get_all_disks())
        except nova_exception.InstanceNotFound:
            pass
        device_type = bdm.get('device_type', None) or 'disk'
        bus = disk_names.choose_bus(
            bdm.get('disk_bus', None), None,
            disk_names.image_bus(instance.image_meta, device_type))
        return '/dev/' + disk_names.next_free(
            bus, used, CONF.compute.max_disk_devices_to_attach)

    # -- attach -------------------------------------------------------------

    def attach(self, context, connection_info, instance, mountpoint,
               disk_bus=None, device_type=None, encryption=None):
        vid = guest_volumes.check_supported(connection_info)
        if encryption:
            raise nova_exception.VolumeEncryptionNotSupported(
                volume_type=guest_volumes.protocol(connection_info),
                volume_id=vid)
        guest = self.host.get_guest(instance)
        info = self.disk_info(instance, mountpoint, disk_bus, device_type)
        self.volumes.connect(connection_info, instance)
        try:
            conf = render_volumes.build_volume_disk(
                self.volumes.disk(connection_info, info))
            guest.attach_device(conf, persistent=True,
                                live=self._live(guest))
        except Exception as ex:
            LOG.error('Failed to attach volume %s at %s: %s', vid,
                      mountpoint, ex, instance=instance)
            self.volumes.disconnect_quietly(context, connection_info,
                                            instance)
            if isinstance(ex, (libvirt.libvirtError,
                               nova_exception.InstanceNotFound)):
                raise nova_exception.VolumeAttachFailed(
                    volume_id=vid, reason=_attach_error(ex)) from ex
            raise
        try:
            # A tagged volume's address, as libvirt gave it.
            device_metadata.update(context, instance, guest)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.exception('Volume %s attached at %s, but the device '
                              'metadata could not be updated: detaching it',
                              vid, info.dev, instance=instance)
                self.detach(context, connection_info, instance, mountpoint)
        LOG.info('Volume %s attached at %s', vid, info.dev,
                 instance=instance)

    @staticmethod
    def disk_info(instance, mountpoint, disk_bus, device_type):
        name = disk_names.strip(mountpoint)
        device_type = device_type or 'disk'
        return guest_volumes.DiskInfo(
            dev=name, bus=disk_names.choose_bus(
                disk_bus, name,
                disk_names.image_bus(instance.image_meta, device_type)),
            device_type=device_type)

    # -- detach -------------------------------------------------------------

    def detach(self, context, connection_info, instance, mountpoint,
               encryption=None):
        name = disk_names.strip(mountpoint)
        vid = guest_volumes.volume_id(connection_info)
        try:
            guest = self.host.get_guest(instance)
            self.detach_device(
                guest, instance,
                lambda persistent=False: self._find_disk(
                    guest, name, vid, persistent), name)
        except nova_exception.InstanceNotFound:
            LOG.warning('During detach_volume, instance disappeared.',
                        instance=instance)
        except nova_exception.DeviceNotFound:
            LOG.info('Device %s not found in instance.', name,
                     instance=instance)
        self.volumes.disconnect(context, connection_info, instance)
        LOG.info('Volume %s detached from %s', vid, name, instance=instance)

    @staticmethod
    def _find_disk(guest, name, vid, persistent):
        """The disk's config in the domain (its live or persistent
        definition): by the volume's alias, else by its name."""
        if vid:
            disk = guest.get_device_by_alias(
                'ua-' + vid, from_persistent_config=persistent)
            if disk:
                return disk
        return guest.get_disk(name, from_persistent_config=persistent)

    def detach_device(self, guest, instance, find, name):
        """Remove a device from the definition, then from the running
        guest, asking it again until libvirt says it is gone.

        :param find: find(persistent=False) -> the device's config or None
        :raises: DeviceNotFound when the domain has no such device,
            DeviceDetachFailed when the guest does not let it go
        """
        live = self._live(guest)
        persistent = guest.has_persistent_configuration()
        persistent_dev = find(persistent=True) if persistent else None
        live_dev = find() if live else None
        if persistent_dev is None and live_dev is None:
            raise nova_exception.DeviceNotFound(device=name)
        if persistent_dev is not None:
            try:
                self._detach_sync(guest, instance, persistent_dev, name,
                                  persistent=True, live=False)
            except nova_exception.DeviceNotFound:
                if live_dev is None:
                    raise
        if live_dev is not None:
            self._detach_live(guest, instance, live_dev, find, name)

    def _detach_live(self, guest, instance, dev, find, name):
        attempts = CONF.libvirt.device_detach_attempts
        for attempt in range(attempts):
            LOG.debug('(%d/%d) Detaching %s (alias %s) from the running '
                      'guest', attempt + 1, attempts, name, dev.alias,
                      instance=instance)
            waiter = self.events.create_waiter(instance.uuid, dev.alias,
                                               _DETACH_EVENTS)
            try:
                self._detach_sync(guest, instance, dev, name,
                                  persistent=False, live=True)
            except Exception:
                with excutils.save_and_reraise_exception():
                    self.events.delete_waiter(waiter)
            event = self.events.wait(waiter,
                                     CONF.libvirt.device_detach_timeout)
            if isinstance(event, libvirtevent.DeviceRemovalFailedEvent):
                raise nova_exception.DeviceDetachFailed(
                    device=name,
                    reason='DeviceRemovalFailedEvent received from libvirt')
            if event is None:
                LOG.warning('No event from libvirt about the detach of %s '
                            'within %d s ([libvirt] device_detach_timeout)',
                            name, CONF.libvirt.device_detach_timeout,
                            instance=instance)
            if find() is None:
                LOG.info('Device %s detached from the running guest', name,
                         instance=instance)
                return
        raise nova_exception.DeviceDetachFailed(
            device=name, reason='the guest did not release it after %d '
            'requests, %d s apart ([libvirt] device_detach_attempts, '
            'device_detach_timeout)' % (attempts,
                                        CONF.libvirt.device_detach_timeout))

    @staticmethod
    def _detach_sync(guest, instance, dev, name, persistent, live):
        """Ask libvirt to detach; Nova's handling of its answers."""
        try:
            guest.detach_device(dev, persistent=persistent, live=live)
        except libvirt.libvirtError as ex:
            code, msg = ex.get_error_code(), ex.get_error_message() or ''
            if (code == libvirt.VIR_ERR_DEVICE_MISSING or
                    (code == libvirt.VIR_ERR_OPERATION_FAILED and
                     'not found' in msg)):
                raise nova_exception.DeviceNotFound(device=name) from ex
            if (code == libvirt.VIR_ERR_INTERNAL_ERROR and
                    'already in the process of unplug' in msg):
                LOG.debug('A detach of %s is already under way', name,
                          instance=instance)
                return
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                LOG.warning('During device detach, instance disappeared.',
                            instance=instance)
                return
            raise

    # -- extend -------------------------------------------------------------

    def extend(self, context, connection_info, instance, requested_size):
        """Grow the volume on the host, then the guest's disk (live: QEMU
        resizes it and tells the guest; a stopped guest sees the new size
        when it starts)."""
        vid = guest_volumes.volume_id(connection_info)
        new_size = self.volumes.extend(connection_info, instance,
                                       requested_size)
        guest = self.host.get_guest(instance)
        if not self._live(guest):
            LOG.debug('Skipping block device resize, guest is not running',
                      instance=instance)
            return
        # As Nova: the host device of a block protocol names the disk (a
        # SCSI LUN has no serial), else the serial, the volume id.
        target = (connection_info.get('data') or {}).get('device_path')
        if not target:
            target = self._target_of(guest, vid)
        try:
            guest.get_block_device(target).resize(new_size)
        except libvirt.libvirtError as ex:
            raise nova_exception.VolumeExtendFailed(
                volume_id=vid, reason='QEMU could not grow %s to %d bytes: '
                '%s' % (target, new_size, ex.get_error_message())) from ex
        LOG.info('Volume %s (%s) extended to %d bytes', vid, target,
                 new_size, instance=instance)

    @staticmethod
    def _target_of(guest, vid):
        """The target name of the volume's disk: by its serial in the
        running domain, else by serial or alias in its definition (a
        swapped volume keeps its predecessor's serial until the guest
        restarts)."""
        for disk in guest.get_all_disks():
            if disk.serial == vid:
                return disk.target_dev
        root = safe_xml.fromstring(guest.get_xml_desc(dump_inactive=True))
        for disk in root.findall('./devices/disk'):
            if vid in (disk.findtext('serial'),
                       (disk.find('alias') if disk.find('alias') is not None
                        else {}).get('name', '').removeprefix('ua-')):
                return disk.find('target').get('dev')
        raise nova_exception.VolumeNotFound(volume_id=vid)

    # -- swap ---------------------------------------------------------------

    def swap(self, context, old_connection_info, new_connection_info,
             instance, mountpoint, resize_to):
        """Copy the guest's disk onto the new volume while it runs, pivot
        to it, then let go of the old one (Nova's swap_volume)."""
        guest_volumes.check_supported(new_connection_info)
        guest = self.host.get_guest(instance)
        name = disk_names.strip(mountpoint)
        current = guest.get_disk(name)
        if current is None:
            raise nova_exception.DiskNotFound(location=name)
        info = guest_volumes.DiskInfo(dev=name, bus=current.target_bus,
                                      device_type=current.source_device)
        self.volumes.connect(new_connection_info, instance)
        try:
            conf = render_volumes.build_volume_disk(
                self.volumes.disk(new_connection_info, info))
            self._copy_and_pivot(guest, name, conf, resize_to)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.volumes.disconnect_quietly(context, new_connection_info,
                                                instance)
        self.volumes.disconnect(context, old_connection_info, instance)
        LOG.info('Volume %s of %s swapped for %s', guest_volumes.volume_id(
            old_connection_info), name, guest_volumes.volume_id(
                new_connection_info), instance=instance)

    def _copy_and_pivot(self, guest, name, conf, resize_to):
        dev = guest.get_block_device(name)
        xml = guest.get_xml_desc(dump_inactive=True, dump_sensitive=True)
        try:
            try:
                # A transient job: the persistent definition stays as it
                # is; it gets the new disk once the pivot is done.
                dev.copy(conf.to_xml(), reuse_ext=True, transient=True)
                deadline = time.monotonic() + self.copy_timeout
                while not dev.is_job_complete():
                    if time.monotonic() > deadline:
                        raise nova_exception.InternalError(
                            'the copy was not in sync after %d s ([kvmx] '
                            'snapshot_timeout)' % self.copy_timeout)
                    time.sleep(POLL_INTERVAL)
                dev.abort_job(pivot=True)
            except Exception as ex:
                LOG.exception('Copying %s to the new volume failed', name)
                _cancel_quietly(dev)
                raise nova_exception.VolumeRebaseFailed(reason=str(ex))
            if resize_to:
                dev.resize(resize_to * units.Gi)
            xml = swapped_definition(guest.get_xml_desc(dump_sensitive=True),
                                     name, conf)
        finally:
            self.host.write_instance_config(xml)


def swapped_definition(live_xml, name, conf):
    """The definition of a domain whose disk ``name`` was pivoted to the
    volume of ``conf``: the running domain's XML, where the guest-visible
    serial and the alias are still the old volume's until it restarts,
    with the new volume's."""
    root = safe_xml.fromstring(live_xml)
    for disk in root.findall('./devices/disk'):
        target = disk.find('target')
        if target is None or target.get('dev') != name:
            continue
        for tag, value in (('serial', conf.serial), ('alias', conf.alias)):
            element = disk.find(tag)
            if element is None:
                continue
            if tag == 'serial':
                element.text = value
            else:
                element.set('name', value)
    return etree.tostring(root, encoding='unicode')


def _cancel_quietly(dev):
    try:
        dev.abort_job()
    except Exception as ex:
        LOG.debug('Block job not cancelled: %s', ex)


def _attach_error(ex):
    if isinstance(ex, nova_exception.InstanceNotFound):
        return 'the server\'s domain is gone (deleted meanwhile?)'
    if ex.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
        return 'the server\'s domain is gone (deleted meanwhile?)'
    return 'libvirt refused the disk: %s' % ex.get_error_message()
