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

"""The compute driver Nova loads: a facade of short delegations.

Each method hands its work to the module that owns it (host/, guest/,
lifecycle, storage, volumes, console); Nova's objects stop at these
modules' boundaries.
"""

import os

from nova.compute import task_states
from nova import context as nova_context
from nova import exception
import nova.conf
from nova import objects  # noqa: F401 (named in a signature)
import nova.conf.neutron
from nova.virt import driver
from nova.virt.libvirt import event as libvirtevent
import os_vif
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_kvmx import conf as kvmx_conf  # noqa: F401 (registers [kvmx])
from nova_kvmx import console
from nova_kvmx import diagnostics
from nova_kvmx import evacuation
from nova_kvmx.guest import consoles
from nova_kvmx import guest_actions
from nova_kvmx.guest import spec
from nova_kvmx.host import availability
from nova_kvmx.host import connection
from nova_kvmx.host import device_events
from nova_kvmx.host import firmware as host_firmware
from nova_kvmx.host import iommu
from nova_kvmx.host import options
from nova_kvmx.host import resources
from nova_kvmx.host import tpm as host_tpm
from nova_kvmx.host import topology
from nova_kvmx.host import traits
from nova_kvmx import lifecycle
from nova_kvmx import live_migration
from nova_kvmx import migration
from nova_kvmx import quiesce
from nova_kvmx import rescue
from nova_kvmx import snapshot
from nova_kvmx import startup
from nova_kvmx import storage
from nova_kvmx.storage import image_cache
from nova_kvmx.storage import rbd as rbd_storage
from nova_kvmx import version
from nova_kvmx import vif
from nova_kvmx import volume_ops
from nova_kvmx import volumes

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


class KVMXDriver(driver.ComputeDriver):
    """Nova compute driver for NFV guests on KVM through libvirt."""

    capabilities = dict(
        driver.ComputeDriver.capabilities,
        supports_image_type_aki=True,
        supports_image_type_ari=True,
        supports_image_type_ami=True,
        supports_image_type_qcow2=True,
        supports_image_type_raw=True,
        supports_pcpus=True,
        supports_attach_interface=True,
        # instance.device_metadata (device_metadata), published by Nova's
        # metadata service and config drive.
        supports_device_tagging=True,
        supports_tagged_attach_interface=True,
        supports_tagged_attach_volume=True,
        # Image downloads verify signatures against instance.trusted_certs.
        supports_trusted_certs=True,
        supports_extend_volume=True,
        supports_multiattach=True,
        supports_bfv_rescue=True,
        supports_evacuate=True,
        # The host's NUMA cells carry their socket (host.topology): Nova's
        # claim honours hw:pci_numa_affinity_policy=socket.
        supports_socket_pci_numa_affinity=True,
        # Nova's image cache manager keeps _base (storage.image_cache).
        has_imagecache=True,
    )
    # The compute service's host (init_host): an evacuated instance is one
    # of another host's.
    _compute_host = None

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        # As Nova's libvirt driver: instance disks on RBD are raw images,
        # so a qcow2 image is taken only when the image cache converts it.
        self.capabilities = dict(
            self.capabilities, supports_image_type_qcow2=not (
                CONF.libvirt.images_type == 'rbd' and
                not CONF.force_raw_images))
        # [neutron_physnet_<name>] and [neutron_tunnel], as Nova's libvirt
        # driver registers them once the configuration is loaded.
        nova.conf.neutron.register_dynamic_opts(CONF)
        self._host = connection.new_host(
            options.connection_uri(CONF),
            lifecycle_event_handler=self.emit_event,
            conn_event_handler=self._handle_conn_event,
            pci_full_listing_interval=CONF.kvmx.pci_full_listing_interval)
        self._storage = storage.InstanceStorage(
            CONF.instances_path, CONF.image_cache.subdirectory_name,
            CONF.default_ephemeral_format,
            max_image_gb=CONF.kvmx.max_image_virtual_size_gb,
            force_raw=CONF.force_raw_images,
            preallocate=CONF.preallocate_images == 'space',
            # Nova's image backend: Flat for default without copy-on-write.
            use_cow=(CONF.use_cow_images or
                     CONF.libvirt.images_type != 'default'),
            cache_group=CONF.kvmx.image_cache_group)
        self._image_cache = image_cache.manager(self._host)
        self._settings = None
        self._device_traits = {}
        self._network = vif.GuestNetwork(
            self._host, CONF.libvirt.device_detach_timeout,
            self._get_settings)
        self._volumes = volumes.HostVolumes(self._host)
        self._device_events = device_events.DeviceEvents()
        self._volume_ops = volume_ops.VolumeOperations(
            self._host, self._volumes, self._device_events,
            CONF.kvmx.snapshot_timeout)
        self._lifecycle = lifecycle.GuestLifecycle(
            self._host, self._storage, self._get_settings,
            CONF.kvmx.domain_start_timeout, self._network, self.virtapi,
            self._volumes)
        self._snapshots = snapshot.Snapshotter(
            self._lifecycle, self._storage, CONF.kvmx.snapshot_timeout)
        self._moves = migration.ColdMigration(self._lifecycle, self._storage)
        self._rescuer = rescue.Rescuer(self._lifecycle, self._storage)
        self._live_migrations = live_migration.LiveMigrations(
            self._host, self._storage, self._lifecycle, self._network,
            self._get_settings)

    # -- host ---------------------------------------------------------------

    def init_host(self, host):
        self._compute_host = host
        options.check_power_management(CONF)
        self._host.initialize()
        try:
            self._settings = self._check_host_and_read_settings()
        except Exception:
            # nova-compute will not start: let go of libvirt and the event
            # threads initialize() started.
            self._host.close()
            raise
        os_vif.initialize()
        volumes.check_multipath()
        if CONF.pci.device_spec:
            for problem in iommu.problems(iommu.read_facts()):
                LOG.warning('PCI passthrough is configured ([pci] '
                            'device_spec) but this host is not ready for '
                            'it: %s', problem)
        LOG.info('nova-kvmx ready: libvirt %s, virt_type %s',
                 options.connection_uri(CONF), options.virt_type(CONF))

    def _check_host_and_read_settings(self):
        arch = self._host.get_capabilities().host.cpu.arch
        virt_type = options.virt_type(CONF)
        connection.check_host(self._host, virt_type, arch)
        # CPU sets and reserved hugepages that do not fit the host stop
        # nova-compute here, not in every periodic task.
        numa = resources.host_topology(self._host)
        os.makedirs(CONF.instances_path, mode=storage.DIR_MODE,
                    exist_ok=True)
        self._storage.check_host()
        network_cache = dict(volumes.settings().cachemodes).get(
            'network', 'none')
        disk_cache = ('none' if storage.supports_direct_io(
            CONF.instances_path) else 'writeback')
        self._storage.rbd = self._rbd_disks(network_cache)
        machine_type = options.default_machine_type(CONF, arch)
        features = traits.guest_features(self._host, virt_type, arch)
        domcaps = traits.domain_capabilities(self._host, arch, machine_type,
                                             virt_type)
        self._device_traits = traits.device_traits(
            domcaps, arch, virt_type, CONF.vnc.enabled,
            traits.has_igb(self._host),
            viommu_models=features['viommu_models'],
            sound_models=features['sound_models'],
            guest_arches=features['guest_arches'])
        tpms = host_tpm.tpm_support(CONF, domcaps, virt_type)
        self._device_traits.update(host_tpm.tpm_traits(tpms))
        fw = host_firmware.firmware_support(
            domcaps, host_firmware.has_stateless_firmware(self._host, arch))
        # Nova's compute manager turns these into the address space
        # traits (hw_maxphysaddr_mode), COMPUTE_SECURITY_UEFI_SECURE_BOOT
        # and COMPUTE_SECURITY_STATELESS_FIRMWARE, as its libvirt driver.
        self.capabilities = dict(
            self.capabilities,
            supports_address_space_passthrough=features['maxphysaddr'],
            supports_address_space_emulated=features['maxphysaddr'],
            supports_secure_boot=fw.secure_boot,
            supports_stateless_firmware=fw.stateless)
        spice = consoles.spice_from_conf(CONF)
        if spice is not None:
            connection.check_spice(self._host, virt_type, arch)
        return spec.DriverSettings(
            virt_type=virt_type,
            machine_type=machine_type,
            arch=arch,
            pcie_ports=CONF.libvirt.num_pcie_ports,
            vnc_listen=CONF.vnc.server_listen if CONF.vnc.enabled else None,
            serial_listen=(CONF.serial_console.proxyclient_address
                           if CONF.serial_console.enabled else None),
            spice=spice,
            package_version=version.version_string(),
            disk_cache=disk_cache,
            disk_io=storage.disk_io(self._storage.preallocate, disk_cache),
            network_disk_cache=network_cache,
            host_cpus=topology.guest_cpu_pools(
                numa, topology.cpu_sets(self._host.get_online_cpus())),
            small_page_kb=topology.small_page_kb(numa),
            realtime_priority=options.realtime_priority(CONF),
            cpu_control=self._host.is_cpu_control_policy_capable(),
            rng_dev_path=rng_dev_path(),
            pointer_model=CONF.pointer_model,
            rx_queue_size=CONF.libvirt.rx_queue_size,
            tx_queue_size=CONF.libvirt.tx_queue_size,
            disk_discard=CONF.libvirt.hw_disk_discard,
            uefi=fw.uefi,
            secure_boot=fw.secure_boot,
            stateless_firmware=fw.stateless,
            tpm_versions=tpms.versions,
            tpm_models=tpms.models,
            tpm_secret_security=tpms.secret_security,
            **features,
            **options.cpu_settings(CONF, self._host, virt_type,
                                   arch))

    def _rbd_disks(self, cache):
        """The RBD disks of ``[libvirt] images_type = rbd`` (None for
        local qcow2 disks), once the bindings and the libvirt secret QEMU
        needs are found."""
        settings = rbd_storage.settings_from_conf(CONF, cache)
        if settings is None:
            return None
        rbd_storage.bindings()
        disks = rbd_storage.RBDDisks(settings)
        disks.check_secret(self._host.get_connection())
        LOG.info('Instance disks on Ceph: pool %s as client.%s (%s)',
                 settings.pool, settings.user or 'admin',
                 settings.ceph_conf or 'default ceph.conf')
        return disks

    def process_instances_at_startup(self, context, instances):
        # As Nova's libvirt driver: the CPU sets must still hold this
        # host's instances before nova-compute initialises them.
        startup.check_pinning(CONF, instances)
        return instances

    def cleanup_host(self, host):
        self._host.close()

    def _get_settings(self):
        return self._settings

    def emit_event(self, event):
        """libvirt's device events go to the detach waiting for them; the
        others to Nova's compute manager."""
        if isinstance(event, libvirtevent.DeviceEvent):
            if not self._device_events.notify(event):
                LOG.debug('No one waits for %s', event)
            return
        super().emit_event(event)

    def _handle_conn_event(self, enabled, reason):
        LOG.warning('libvirt connection %s: %s',
                    'restored' if enabled else 'lost', reason or '')
        availability.set_host_enabled(self.virtapi, CONF.host, enabled,
                                      reason)

    def get_available_nodes(self, refresh=False):
        return [self._host.get_hostname()]

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_host_cpu_stats(self):
        # Nova's cpu.virt_driver compute monitor reads these.
        return self._host.get_cpu_stats()

    def get_host_uptime(self):
        return diagnostics.host_uptime()

    def get_available_resource(self, nodename):
        # With the node UUID of get_nodenames_by_uuid (see there).
        return dict(resources.available_resources(
            self._host, CONF.instances_path, nodename, options.virt_type(CONF),
            self._pool_usage()), uuid=self._host.get_node_uuid())

    def _pool_usage(self):
        """(total, used, free) GiB of the RBD pool holding the instance
        disks, as Nova's libvirt driver reports DISK_GB with images_type
        rbd; None for disks in the instances path."""
        if self._storage.rbd is None:
            return None
        return self._storage.rbd.pool_usage_gb()

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        inventory = provider_tree.data(nodename).inventory
        resources.update_inventory(
            provider_tree, nodename,
            resources.inventory_totals(self._host, CONF.instances_path,
                                       self._pool_usage()),
            self._get_allocation_ratios(inventory))
        resources.update_traits(provider_tree, nodename, dict(
            self._device_traits, **resources.cpu_traits(
                self._host.get_capabilities(), self._settings,
                self._host.has_hyperthreading)))

    # -- instances ------------------------------------------------------------

    def list_instances(self):
        return [g.name for g in self._lifecycle.list_guests(
            CONF.instance_name_template)]

    def list_instance_uuids(self):
        return [g.uuid for g in self._lifecycle.list_guests(
            CONF.instance_name_template)]

    def instance_exists(self, instance):
        return self._lifecycle.find_guest(instance) is not None

    def get_info(self, instance, use_cache=True):
        return self._host.get_guest(instance).get_info(self._host)

    def trigger_crash_dump(self, instance):
        guest_actions.inject_nmi(self._host.get_guest(instance), instance)

    def set_admin_password(self, instance, new_pass):
        # Nova's order: the image is checked for the agent first.
        guest_actions.set_admin_password(
            self._host.get_guest(instance), instance, new_pass)

    def poll_rebooting_instances(self, timeout, instances):
        # As Nova's libvirt driver: a reboot here finishes (or fails)
        # within reboot(), so no instance is left rebooting to poll.
        pass

    def get_diagnostics(self, instance):
        return diagnostics.legacy_diagnostics(
            self._host.get_guest(instance))

    def get_instance_diagnostics(self, instance):
        return diagnostics.instance_diagnostics(
            self._host.get_guest(instance), instance, options.virt_type(CONF))

    def block_stats(self, instance, disk_id):
        return diagnostics.block_stats(self._host, instance, disk_id)

    def get_all_volume_usage(self, context, compute_host_bdms):
        return diagnostics.volume_usage(self._host, compute_host_bdms)

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        self._lifecycle.spawn(
            context, instance, image_meta, injected_files, admin_password,
            network_info, block_device_info,
            evacuation.arriving(instance, self._compute_host), power_on)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        # destroy_secrets: the libvirt secrets Nova's libvirt driver keeps
        # for natively decrypted (LUKS) volumes and encrypted ephemeral
        # disks; both are refused here, so no secret of an instance exists
        # (an RBD client's secret is the operator's, never deleted).
        shared_disks = True
        if (not destroy_disks and self._storage.shared_disks and (
                instance.task_state == task_states.RESIZE_REVERTING or
                evacuation.departed(instance, self._compute_host))):
            # The destination of a reverted resize, or the failed host of
            # an evacuation: Nova keeps the disks (on RBD they are the
            # instance's now, see check_instance_shared_storage_local),
            # the other files made here go.
            destroy_disks, shared_disks = True, False
        self._lifecycle.destroy(instance, network_info, destroy_disks,
                                block_device_info, context, shared_disks)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        # As Nova's libvirt driver: after a live migration of a guest whose
        # disks are all volumes or on RBD, Nova keeps the disks but the
        # instance directory (kernel, config drive, console log) goes
        # unless the destination shares it.
        shared_disks = True
        if (not destroy_disks and migrate_data is not None and
                migrate_data.obj_attr_is_set('is_shared_block_storage') and
                migrate_data.is_shared_block_storage and
                not migrate_data.is_shared_instance_path):
            destroy_disks, shared_disks = True, False
        self._lifecycle.destroy(instance, network_info if destroy_vifs else
                                None, destroy_disks, block_device_info,
                                context, shared_disks)

    def manage_image_cache(self, context, all_instances):
        # Nova's manager locks in the directory the cache fills under,
        # private before either makes it.
        image_cache.lock_path(CONF.instances_path)
        self._image_cache.update(context, all_instances)

    def cache_image(self, context, image_id):
        return image_cache.precache(self._storage, context, image_id)

    def delete_instance_files(self, instance):
        # The instance directory only (Nova calls it for instances that
        # may live on another host now): disks on RBD go with destroy.
        return self._storage.destroy(instance, shared_disks=False)

    def instance_on_disk(self, instance):
        # As Nova's libvirt driver: an evacuation finds the instance's
        # disks where it is rebuilt when they are on RBD or its directory
        # is shared.
        return self._storage.exists(instance) or self._storage.shared_disks

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        self._lifecycle.reboot(context, instance, reboot_type,
                               CONF.kvmx.soft_reboot_timeout, network_info,
                               block_device_info)

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._lifecycle.power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._lifecycle.power_on(context, instance, network_info,
                                 block_device_info)

    def pause(self, instance):
        self._lifecycle.pause(instance)

    def unpause(self, instance):
        self._lifecycle.unpause(instance)

    def suspend(self, context, instance):
        self._lifecycle.suspend(instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._lifecycle.resume(instance, context, block_device_info)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        self._lifecycle.resume_state_on_host_boot(context, instance,
                                                  network_info,
                                                  block_device_info)

    # -- ports ----------------------------------------------------------------

    def plug_vifs(self, instance, network_info):
        # nova-compute's start plugs every instance's ports again (after a
        # host reboot the bridges and OVS ports are gone), as for Nova's
        # libvirt driver. Each port on its own: a running guest keeps the
        # ports already plugged when a later one fails (no rollback).
        for port in network_info:
            self._network.plug(instance, port)

    def unplug_vifs(self, instance, network_info):
        # As Nova's libvirt driver: the first failure stops it (Nova's
        # compute manager logs it, when a failed build's ports are
        # cleaned up).
        for port in network_info:
            self._network.unplug(instance, port)

    def attach_interface(self, context, instance, image_meta, vif):
        self._network.attach_interface(context, instance, image_meta, vif,
                                       options.virt_type(CONF))

    def detach_interface(self, context, instance, vif):
        self._network.detach_interface(context, instance,
                                       instance.image_meta, vif,
                                       options.virt_type(CONF))

    # -- volumes --------------------------------------------------------------

    def get_volume_connector(self, instance):
        return volumes.connector_properties()

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        self._volume_ops.attach(context, connection_info, instance,
                                mountpoint, disk_bus, device_type, encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        self._volume_ops.detach(context, connection_info, instance,
                                mountpoint, encryption)

    def extend_volume(self, context, connection_info, instance,
                      requested_size):
        self._volume_ops.extend(context, connection_info, instance,
                                requested_size)

    def swap_volume(self, context, old_connection_info, new_connection_info,
                    instance, mountpoint, resize_to):
        self._volume_ops.swap(context, old_connection_info,
                              new_connection_info, instance, mountpoint,
                              resize_to)

    def default_root_device_name(self, instance, image_meta, root_bdm):
        return self._volume_ops.default_root_device_name(
            instance, image_meta, root_bdm)

    def default_device_names_for_instance(self, instance, root_device_name,
                                          *block_device_lists):
        self._volume_ops.default_device_names(instance, root_device_name,
                                              *block_device_lists)

    def get_device_name_for_instance(self, instance, bdms, block_device_obj):
        return self._volume_ops.device_name_for(instance, bdms,
                                                block_device_obj)

    # -- rescue ---------------------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info):
        self._rescuer.rescue(context, instance, network_info, image_meta,
                             rescue_password, block_device_info, share_info)

    def unrescue(self, context: nova_context.RequestContext,
                 instance: 'objects.Instance'):
        self._rescuer.unrescue(context, instance)

    # -- resize and cold migration ------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        return self._moves.migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info, block_device_info,
            timeout, retry_interval)

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        self._moves.finish_migration(
            context, migration, instance, disk_info, network_info,
            image_meta, resize_instance, allocations, block_device_info,
            power_on, share_info)

    def confirm_migration(self, context, migration, instance, network_info):
        self._moves.confirm_migration(context, migration, instance,
                                      network_info)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        self._moves.finish_revert_migration(
            context, instance, network_info, migration, block_device_info,
            power_on, share_info)

    def check_instance_shared_storage_local(self, context, instance):
        if self._storage.shared_disks:
            # As Nova's libvirt driver with shared block storage: no
            # check, the disks are shared (Nova keeps them).
            return None
        return {'filename': self._storage.make_probe()}

    def check_instance_shared_storage_remote(self, context, data):
        return self._storage.sees_probe(data['filename'])

    def check_instance_shared_storage_cleanup(self, context, data):
        self._storage.remove_probe(data['filename'])

    def snapshot(self, context, instance, image_id, update_task_state):
        self._snapshots.snapshot(context, instance, image_id,
                                 update_task_state)

    def quiesce(self, context, instance, image_meta):
        # Nova's own order: the agent is checked before the guest is looked
        # up.
        quiesce.check_agent(image_meta)
        quiesce.freeze(self._host.get_guest(instance), instance)

    def unquiesce(self, context, instance, image_meta):
        quiesce.check_agent(image_meta)
        quiesce.thaw(self._host.get_guest(instance), instance)

    # -- consoles -------------------------------------------------------------

    def get_console_output(self, context, instance):
        self._host.get_guest(instance)
        return console.console_output(
            self._storage.console_log(instance),
            CONF.kvmx.console_output_max_kb * 1024)

    def get_vnc_console(self, context, instance):
        guest = self._host.get_guest(instance)
        return console.vnc_console(guest.get_xml_desc())

    def get_spice_console(self, context, instance):
        guest = self._host.get_guest(instance)
        return console.spice_console(guest.get_xml_desc())

    def get_serial_console(self, context, instance):
        guest = self._host.get_guest(instance)
        return console.serial_console(guest.get_xml_desc())

    # -- live migration -------------------------------------------------------

    def get_nodenames_by_uuid(self, refresh=False):
        # The node UUID is kept per driver (in its Host) and reported with
        # the resources, as Nova's libvirt driver does: two compute services
        # of one process must not share it (Nova's module-global cache) --
        # both ends of an in-process live migration.
        return {self._host.get_node_uuid(): self.get_available_nodes()[0]}

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        return self._live_migrations.check_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration, disk_over_commit)

    def cleanup_live_migration_destination_check(self, context,
                                                 dest_check_data):
        self._live_migrations.cleanup_destination_check(dest_check_data)

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data, block_device_info=None):
        return self._live_migrations.check_source(
            context, instance, dest_check_data, block_device_info)

    def post_claim_migrate_data(self, context, instance, migrate_data, claim):
        return self._live_migrations.post_claim(instance, migrate_data, claim)

    def get_instance_disk_info(self, instance, block_device_info=None):
        return jsonutils.dumps(self._live_migrations.disk_info(instance))

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        return self._live_migrations.pre_live_migration(
            context, instance, block_device_info, network_info, migrate_data)

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        self._live_migrations.live_migration(
            context, instance, dest, post_method, recover_method,
            migrate_data)

    def live_migration_force_complete(self, instance):
        self._live_migrations.force_complete(instance)

    def live_migration_abort(self, instance):
        self._live_migrations.abort(instance)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        self._live_migrations.post_live_migration(context, instance,
                                                  block_device_info)

    def post_live_migration_at_source(self, context, instance, network_info):
        self._live_migrations.post_at_source(instance, network_info)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        self._live_migrations.post_at_destination(context, instance,
                                                  network_info)

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        self._live_migrations.rollback_at_source(context, instance,
                                                 migrate_data)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        self._live_migrations.rollback_at_destination(
            instance, network_info, migrate_data, block_device_info, context)


def rng_dev_path():
    """``[libvirt] rng_dev_path``, which must exist (Nova's
    RngDeviceNotExist otherwise: every guest gets an RNG from it)."""
    path = CONF.libvirt.rng_dev_path
    if path and not os.path.exists(path):
        raise exception.RngDeviceNotExist(path=path)
    return path
