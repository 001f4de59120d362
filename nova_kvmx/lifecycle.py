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

"""Instance lifecycle on libvirt: spawn, destroy, reboot, power, pause,
suspend.

Domains are driven through Nova's :class:`nova.virt.libvirt.guest.Guest`
wrapper; this module adds the policy around it: every step of a spawn is
undone when a later one fails, graceful shutdowns wait with a deadline and
fall back to a hard stop, and a hard reboot re-renders the domain from the
instance so the guest always realises what Nova currently holds. A guest
whose ports Neutron has yet to wire starts paused and runs once Neutron
reports them plugged (:mod:`nova_kvmx.vif_events`). Volumes are connected
on the host before the domain is created, every time it is (spawn, hard
reboot, power on), and disconnected when it is removed for good. As in
Nova's libvirt driver, a new guest's device metadata (the tagged devices'
addresses) is read from the domain once defined, and its config drive,
which publishes it, is made then, before the guest starts.
"""

import functools
import os
import re
import time

from nova.compute import power_state
from nova import exception
from nova.virt.libvirt import guest as libvirt_guest
from oslo_log import log as logging
from oslo_utils import excutils

from nova_kvmx import console
from nova_kvmx import device_metadata
from nova_kvmx import exception as kvmx_exception
from nova_kvmx.guest import consoles
from nova_kvmx.guest import devices
from nova_kvmx.guest import firmware
from nova_kvmx.guest import keys
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from nova_kvmx.guest import volumes as guest_volumes
from nova_kvmx import vif
from nova_kvmx import vif_events
from nova_kvmx import vtpm_secret
from nova_kvmx import volumes as host_volumes

LOG = logging.getLogger(__name__)

POLL_INTERVAL = 0.5

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None


class GuestLifecycle(object):
    def __init__(self, host, storage, settings_source, start_timeout,
                 network, virtapi, volumes=None):
        """:param settings_source: callable returning the DriverSettings
        (known once init_host has looked at the host).
        :param network: the vif.GuestNetwork plugging the guests' ports
        :param virtapi: Nova's ComputeVirtAPI, which delivers Neutron's
            events to the driver
        :param volumes: the volumes.HostVolumes connecting volumes here
        """
        self.host = host
        self.storage = storage
        self.settings = settings_source
        self.start_timeout = start_timeout
        self.network = network
        self.virtapi = virtapi
        self.volumes = volumes

    # -- creation -----------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, network_info, block_device_info=None,
              evacuated=False, power_on=True):
        """Create the guest's files, connect its volumes, plug its ports
        and start its domain; a failure at any step undoes the others.

        :param evacuated: the instance is rebuilt here after its host
            failed (:mod:`nova_kvmx.evacuation`): its disks on RBD, or
            its whole directory when the instances path is shared with
            that host, are used as they are, and kept if the spawn fails
        :param power_on: False (a cross-cell resize of a stopped server)
            only defines the domain and plugs its ports
        """
        # Before any file, port or domain exists.
        keys.refuse_unsupported(instance.flavor, image_meta)
        bdms = host_volumes.mapping(block_device_info)
        volume_backed = host_volumes.root_volume(block_device_info) \
            is not None
        for bdm in bdms:
            guest_volumes.check_supported(bdm['connection_info'])
        self.host.get_connection()
        self.check_devices(instance, network_info)
        shared_dir = evacuated and self.storage.exists(instance)
        keep_disks = evacuated and (shared_dir or self.storage.shared_disks)
        if shared_dir:
            LOG.info('Using the files of the evacuated instance in %s',
                     self.storage.instance_dir(instance), instance=instance)
            files = self.storage.files_of(instance, volume_backed)
        else:
            files = self.storage.prepare(context, instance, image_meta,
                                         injected_files, admin_password,
                                         network_info, volume_backed,
                                         disks=not keep_disks,
                                         config_drive=False)
        defined = functools.partial(self.describe_devices, context, instance,
                                    injected_files, admin_password,
                                    network_info)
        try:
            self.check_rbd_disks(files, instance)
            self.volumes.connect_all(context, instance, bdms)
            try:
                xml = self.domain_xml(context, instance, image_meta, files,
                                      network_info, bdms)
                if power_on:
                    self.start_with_network(
                        instance, xml, network_info, vif_events.for_plug(
                            network_info, self.settings().virt_type),
                        defined, context=context)
                else:
                    self.define_with_network(instance, xml, network_info,
                                             defined)
            except Exception:
                with excutils.save_and_reraise_exception():
                    self.volumes.disconnect_all(context, instance, bdms)
        except Exception:
            with excutils.save_and_reraise_exception():
                if not shared_dir:
                    self.storage.discard(instance,
                                         shared_disks=not keep_disks)
        LOG.info('Guest started' if power_on else 'Guest defined, not started',
                 instance=instance)

    def describe_devices(self, context, instance, injected_files,
                         admin_password, network_info, guest):
        """Once the domain is defined: the instance's device metadata
        from the domain libvirt holds, then its config drive, which
        carries it (the compute manager saves the instance)."""
        device_metadata.refresh(context, instance, guest.get_xml_desc(),
                                network_info)
        self.storage.make_config_drive(context, instance, injected_files,
                                       admin_password, network_info)

    def check_rbd_disks(self, files, instance):
        """QEMU opens the instance's disks on RBD with the key in the
        libvirt secret, not with this host's keyring: checked as for an
        RBD volume, so that a wrong key or a cluster QEMU cannot reach
        fails the spawn naming the cause, instead of blocking the guest
        for Ceph's client_mount_timeout (300 s)."""
        disk = next((d for d in (files.root_disk, files.ephemeral, files.swap)
                     if isinstance(d, spec.RBDImage)), None)
        if disk is None:
            return

        def failure(reason):
            return kvmx_exception.RBDStorageError(
                pool=disk.name.split('/')[0], reason='QEMU cannot open %s: '
                '%s' % (disk.name, reason))

        self.volumes.check_rbd(disk, instance, failure)

    def check_devices(self, instance, network_info):
        """Fail, naming the device, before anything is created or removed
        when a claimed PCI device left the host."""
        vif.load_claims(instance)
        vif.check_host_devices(self.host, devices.passthrough_devices(
            instance, network_info))

    def domain_xml(self, context, instance, image_meta, files,
                   network_info=None, bdms=(), chosen_firmware=None):
        """The domain of the instance, with ``bdms`` (connected driver
        BDMs of its volumes) and, with the serial console, TCP ports
        acquired for its serial ports: they are the domain's until it is
        undefined, or given back with :func:`forget_domain` if it is never
        created. ``chosen_firmware`` (:func:`kept_firmware`): the UEFI
        firmware of the instance's previous domain."""
        vif.load_claims(instance)
        files = self.storage.with_bases(files, self.find_guest(instance))
        settings = self.settings()
        vtpm_secret.ensure(context, instance, image_meta, settings)
        serial = console.acquire_serial_ports(
            settings.serial_listen, consoles.serial_port_count(
                instance.flavor, image_meta, settings))
        try:
            guest = planner.plan_guest(context, instance, image_meta, files,
                                       settings, network_info,
                                       vif.vf_netdevs(network_info),
                                       self.volumes.disks(instance, bdms),
                                       serial_ports=serial,
                                       chosen_firmware=chosen_firmware)
            record_machine_type(instance, image_meta, guest.machine_type)
            return render.render_domain(guest)
        except Exception:
            with excutils.save_and_reraise_exception():
                console.release_serial_ports(settings.serial_listen, serial)

    def start_with_network(self, instance, xml, network_info, events=(),
                           defined=None, context=None):
        """Plug the ports, then start the domain (calling
        ``defined(guest)`` once it is defined, before it starts).

        With ``events`` (from :mod:`nova_kvmx.vif_events`) the domain
        starts paused, and runs once Neutron has reported those ports
        plugged: the events are registered for before the ports are
        plugged, so none is missed. A start that fails, the wait
        included, leaves no domain and no port plugged. ``context`` (the
        request's) reads the vTPM secret of a guest with an emulated TPM.
        """
        guest = None
        plugged = False
        try:
            with vif_events.waiting(self.virtapi, instance, events):
                self.network.plug_all(instance, network_info)
                plugged = True
                guest = self.start_new_domain(instance, xml,
                                              paused=bool(events),
                                              defined=defined,
                                              context=context)
            if events:
                self.run_paused(guest, instance)
        except Exception:
            with excutils.save_and_reraise_exception():
                if guest is not None:
                    self.discard(guest, instance)
                forget_domain(xml)
                if plugged:
                    self.network.unplug_all(instance, network_info)
        return guest

    def define_with_network(self, instance, xml, network_info,
                            defined=None):
        """Plug the ports and define the domain without starting it (as
        Nova's libvirt driver with power_on=False), then call
        ``defined(guest)``; a failure leaves no port plugged and no
        domain."""
        self.network.plug_all(instance, network_info)
        try:
            guest = self.host.write_instance_config(xml)
            if defined is not None:
                try:
                    defined(guest)
                except Exception:
                    with excutils.save_and_reraise_exception():
                        self.discard(guest, instance)
            return guest
        except Exception:
            with excutils.save_and_reraise_exception():
                forget_domain(xml)
                self.network.unplug_all(instance, network_info)

    def start_new_domain(self, instance, xml, paused=False, defined=None,
                         context=None):
        """Define and start a domain (paused if asked), calling
        ``defined(guest)`` in between; undefine it again if it fails."""
        try:
            guest = libvirt_guest.Guest.create(xml, self.host)
        except libvirt.libvirtError as ex:
            raise kvmx_exception.GuestStartFailed(
                name=instance.name, reason=ex.get_error_message())
        try:
            if defined is not None:
                defined(guest)
            self.launch(guest, instance, context, paused)
        except Exception as ex:
            self.discard(guest, instance)
            if isinstance(ex, libvirt.libvirtError):
                raise kvmx_exception.GuestStartFailed(
                    name=instance.name,
                    reason=ex.get_error_message()) from ex
            raise
        return guest

    def run_paused(self, guest, instance):
        """Let a domain started paused run."""
        try:
            guest.resume()
        except libvirt.libvirtError as ex:
            raise kvmx_exception.GuestStartFailed(
                name=instance.name, reason=ex.get_error_message()) from ex
        self.wait_for_power_state(guest, power_state.RUNNING,
                                  self.start_timeout)

    def launch(self, guest, instance, context, paused=False):
        """Start the defined domain (paused if asked) and wait until it
        is so. Every start goes through here: a guest with an emulated TPM
        needs its secret in libvirt while it starts."""
        with vtpm_secret.defined(self.host, context, instance):
            guest.launch(pause=paused)
        self.wait_for_power_state(
            guest, power_state.PAUSED if paused else power_state.RUNNING,
            self.start_timeout)

    def discard(self, guest, instance):
        """Undefine a domain whose start failed. A failure to do so is
        only logged: the start's own error is the one to report."""
        try:
            self.undefine(guest, instance)
        except Exception:
            LOG.exception('Could not undefine the failed domain',
                          instance=instance)

    # -- removal ------------------------------------------------------------

    def destroy(self, instance, network_info=None, destroy_disks=True,
                block_device_info=None, context=None, shared_disks=True):
        """Remove the domain, then unplug its ports (libvirt has let go of
        their devices by then), disconnect its volumes from this host and,
        if asked, remove its files (and, unless ``shared_disks`` is False,
        its disks on RBD, which other hosts reach too).

        :raises: RBDStorageError when its RBD disks cannot be removed
            (deleting the server again retries)
        """
        guest = self.find_guest(instance)
        if guest is not None:
            try:
                # As Nova's libvirt driver: the NVRAM and the vTPM's
                # state go with the disks.
                self.undefine(guest, instance, keep_nvram=not destroy_disks,
                              keep_vtpm=not destroy_disks)
            except libvirt.libvirtError as ex:
                # Nova shows a user only a Nova exception's message.
                raise exception.InstanceTerminationFailure(
                    reason=ex.get_error_message()) from ex
        if destroy_disks and vtpm_secret.wanted(instance):
            vtpm_secret.remove(self.host, instance)
        self.network.unplug_all(instance, network_info)
        self.volumes.disconnect_all(
            context, instance, host_volumes.mapping(block_device_info),
            force=True)
        if destroy_disks and not self.storage.destroy(instance,
                                                      shared_disks):
            # The delete goes on: Nova's _run_pending_deletes task calls
            # delete_instance_files again for deleted instances not cleaned.
            LOG.warning('Could not remove the files of the instance in %s; '
                        'nova-compute retries every [DEFAULT] '
                        'instance_delete_interval seconds',
                        self.storage.instance_dir(instance),
                        instance=instance)

    def list_guests(self, name_template):
        """The domains that are Nova instances: those named by Nova's
        ``instance_name_template``. Other domains on the host (an operator's
        own VMs, another deployment's) are neither reported nor touched."""
        pattern = name_pattern(name_template)
        return [guest for guest in self.host.list_guests(only_running=False)
                if pattern.fullmatch(guest.name)]

    def find_guest(self, instance):
        try:
            return self.host.get_guest(instance)
        except exception.InstanceNotFound:
            return None

    def hard_stop(self, guest):
        try:
            if guest.is_active():
                guest.poweroff()
        except libvirt.libvirtError as ex:
            # It may have stopped between the check and the call.
            if ex.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                raise

    def undefine(self, guest, instance, keep_nvram=False, keep_vtpm=False):
        """Stop the domain if it runs, then remove its definition, any
        managed save image and, unless kept, its UEFI NVRAM and its
        emulated TPM's state; its serial console's ports are free again."""
        try:
            xml = guest.get_xml_desc()
            self.hard_stop(guest)
            guest.delete_configuration(keep_vtpm=keep_vtpm,
                                       keep_nvram=keep_nvram)
        except libvirt.libvirtError as ex:
            if ex.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        else:
            forget_domain(xml)
        LOG.debug('Domain undefined', instance=instance)

    # -- power --------------------------------------------------------------

    def power_off(self, instance, timeout=0, retry_interval=0):
        guest = self.host.get_guest(instance)
        if timeout and self.clean_shutdown(guest, instance, timeout,
                                           retry_interval):
            return
        self.hard_stop(guest)
        self.wait_for_power_state(guest, power_state.SHUTDOWN,
                                  self.start_timeout)

    def clean_shutdown(self, guest, instance, timeout, retry_interval=0):
        """Press the ACPI power button (again every ``retry_interval``
        seconds) and wait up to ``timeout`` seconds for the guest to stop.

        :returns: True if the guest stopped by itself.
        """
        if guest.get_power_state(self.host) != power_state.RUNNING:
            return not guest.is_active()
        deadline = time.monotonic() + timeout
        next_press = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_press:
                try:
                    guest.shutdown()
                except libvirt.libvirtError as ex:
                    if guest.is_active():
                        raise
                    LOG.debug('Guest stopped during shutdown: %s', ex)
                next_press = (time.monotonic() + retry_interval
                              if retry_interval else deadline)
            if not guest.is_active():
                LOG.info('Guest shut down cleanly', instance=instance)
                return True
            time.sleep(POLL_INTERVAL)
        LOG.warning('Guest did not shut down within %d seconds', timeout,
                    instance=instance)
        return False

    def power_on(self, context, instance, network_info=None,
                 block_device_info=None):
        self.hard_reboot(context, instance, network_info,
                         block_device_info=block_device_info)

    def reboot(self, context, instance, reboot_type, soft_timeout,
               network_info=None, block_device_info=None):
        if reboot_type == 'SOFT':
            guest = self.host.get_guest(instance)
            if (guest.get_power_state(self.host) == power_state.RUNNING and
                    self.clean_shutdown(guest, instance, soft_timeout)):
                self.launch(guest, instance, context)
                LOG.info('Guest soft rebooted', instance=instance)
                return
            LOG.warning('Soft reboot failed, rebooting hard',
                        instance=instance)
        self.hard_reboot(context, instance, network_info,
                         block_device_info=block_device_info)

    def hard_reboot(self, context, instance, network_info=None,
                    wait_for_plug=True, block_device_info=None):
        """Stop, re-render and start: the new domain realises what Nova
        holds for the instance now (flavor, image properties, claim,
        ports, volumes: connected again, as Nova's libvirt driver does,
        which after a host reboot they need; without
        ``block_device_info`` the instance's mappings in Nova's database).

        As Nova's libvirt driver does, every port is unplugged and
        plugged again (after a host reboot their host side is gone
        anyway), so Neutron sees each go down and up; the start waits for
        Neutron's events of the ports whose vnic types ``[workarounds]
        wait_for_vif_plugged_event_during_hard_reboot`` lists, unless
        ``wait_for_plug`` is False.
        """
        self.check_devices(instance, network_info)
        if block_device_info is None:
            block_device_info = host_volumes.instance_block_device_info(
                context, instance)
        bdms = host_volumes.mapping(block_device_info)
        # Before the guest is stopped: a volume that cannot be reached
        # leaves a running guest running (and connected).
        self.volumes.connect_all(context, instance, bdms, rollback=False)
        guest = self.find_guest(instance)
        chosen = None
        if guest is not None:
            # The guest's UEFI NVRAM stays, with the firmware it was made
            # for (as Nova's libvirt driver).
            chosen = kept_firmware(guest)
            self.undefine(guest, instance, keep_nvram=True, keep_vtpm=True)
        xml = self.domain_xml(
            context, instance, instance.image_meta, self.storage.files_of(
                instance, host_volumes.root_volume(block_device_info)
                is not None), network_info, bdms, chosen)
        self.network.unplug_all(instance, network_info)
        events = vif_events.for_hard_reboot(
            network_info, self.settings().virt_type) if wait_for_plug else []
        self.start_with_network(instance, xml, network_info, events,
                                context=context)
        LOG.info('Guest hard rebooted', instance=instance)

    def resume_state_on_host_boot(self, context, instance, network_info=None,
                                  block_device_info=None):
        guest = self.find_guest(instance)
        if (guest is not None and
                guest.get_power_state(self.host) == power_state.RUNNING):
            return
        self.hard_reboot(context, instance, network_info,
                         block_device_info=block_device_info)

    def pause(self, instance):
        self.host.get_guest(instance).pause()

    def unpause(self, instance):
        self.host.get_guest(instance).resume()

    def suspend(self, instance):
        """Managed save: memory to disk, domain stopped. libvirt cannot
        save a guest with host PCI devices: they are hot-unplugged first
        and given back by resume (as Nova's libvirt driver does)."""
        guest = self.host.get_guest(instance)
        assigned = self.assigned_devices(instance)
        self.network.detach_live(guest, assigned)
        try:
            guest.save_memory_state()
        except Exception:
            with excutils.save_and_reraise_exception():
                self.network.attach_live(guest, assigned)

    def resume(self, instance, context=None, block_device_info=None):
        """Start from the managed save image written by suspend (its
        volumes connected again first: after a host reboot they are not)."""
        guest = self.host.get_guest(instance)
        self.volumes.connect_all(context, instance,
                                 host_volumes.mapping(block_device_info),
                                 rollback=False)
        self.launch(guest, instance, context)
        self.network.attach_live(guest, self.assigned_devices(instance))

    def assigned_devices(self, instance):
        """The instance's host PCI devices (VFs, PFs, alias devices), from
        its ports in Nova's cache and its claims."""
        network_info = instance.get_network_info()
        vif.load_claims(instance)
        return [spec for spec in devices.plan_devices(
            instance, instance.image_meta, self.settings().virt_type,
            network_info, vif.vf_netdevs(network_info))
            if devices.is_host_device(spec)]

    def wait_for_power_state(self, guest, state, timeout):
        deadline = time.monotonic() + timeout
        while True:
            current = guest.get_power_state(self.host)
            if current == state:
                return
            if time.monotonic() >= deadline:
                raise exception.InternalError(
                    'Guest %s is %s after %d seconds, expected %s' % (
                        guest.name, power_state.STATE_MAP[current], timeout,
                        power_state.STATE_MAP[state]))
            time.sleep(POLL_INTERVAL)


def record_machine_type(instance, image_meta, machine_type):
    """Keep the machine type the guest first got from the host's default
    in the instance's system metadata (``image_hw_machine_type``, which
    ``instance.image_meta`` reads back as ``hw_machine_type``), as Nova's
    libvirt driver does: a later change of ``[libvirt] hw_machine_type``
    never changes an existing guest's machine (hard reboot, migration,
    evacuation). Nova's compute manager saves the instance. A recorded
    value is kept (a rescue image without the property does not replace
    it)."""
    if (image_meta.properties.get('hw_machine_type') is None and
            'image_hw_machine_type' not in instance.system_metadata):
        instance.system_metadata['image_hw_machine_type'] = machine_type


def kept_firmware(guest):
    """The UEFI firmware files libvirt chose for ``guest`` (a
    guest.firmware.Chosen), None when it chose none or one of its files
    is gone from the host (libvirt then chooses again, as Nova's libvirt
    driver lets it)."""
    chosen = firmware.chosen_firmware(guest.get_xml_desc())
    if chosen is None or not all(os.path.exists(p) for p in chosen.files()):
        return None
    return chosen


def forget_domain(xml):
    """Give back what rendering the domain ``xml`` took from the host
    (its serial console's ports) once no domain of it exists."""
    console.release_domain_serial_ports(xml)


def name_pattern(template):
    """A regular expression matching the names ``template`` (a printf-style
    ``instance_name_template`` such as ``instance-%08x`` or
    ``%(uuid)s``) produces."""
    conversions = {'d': '[0-9]+', 'i': '[0-9]+', 'x': '[0-9a-f]+',
                   'X': '[0-9A-F]+', 's': '[0-9a-zA-Z-]+'}
    parts = re.split(r'%(?:\([a-z_]+\))?[-#0 +]*\d*([sdixX])', template)
    return re.compile(''.join(
        conversions[part] if i % 2 else re.escape(part)
        for i, part in enumerate(parts)))
