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
lifecycle, storage, console); Nova's objects stop at these modules'
boundaries.
"""

import os

from nova import context as nova_context
from nova import exception
import nova.conf
from nova import objects  # noqa: F401 (named in a signature)
import nova.conf.neutron
from nova.virt import driver
import os_vif
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_kvmx import conf as kvmx_conf  # noqa: F401 (registers [kvmx])
from nova_kvmx import console
from nova_kvmx.guest import planner
from nova_kvmx.guest import spec
from nova_kvmx.host import availability
from nova_kvmx.host import connection
from nova_kvmx.host import iommu
from nova_kvmx.host import resources
from nova_kvmx.host import topology
from nova_kvmx import lifecycle
from nova_kvmx import live_migration
from nova_kvmx import migration
from nova_kvmx import quiesce
from nova_kvmx import rescue
from nova_kvmx import snapshot
from nova_kvmx import storage
from nova_kvmx import version
from nova_kvmx import vif

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
    )

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        # [neutron_physnet_<name>] and [neutron_tunnel], as Nova's libvirt
        # driver registers them once the configuration is loaded.
        nova.conf.neutron.register_dynamic_opts(CONF)
        self._host = connection.new_host(
            CONF.kvmx.connection_uri,
            lifecycle_event_handler=self.emit_event,
            conn_event_handler=self._handle_conn_event,
            pci_full_listing_interval=CONF.kvmx.pci_full_listing_interval)
        self._storage = storage.InstanceStorage(
            CONF.instances_path, CONF.image_cache.subdirectory_name,
            CONF.default_ephemeral_format)
        self._settings = None
        self._network = vif.GuestNetwork(
            self._host, CONF.libvirt.device_detach_timeout,
            self._get_settings)
        self._lifecycle = lifecycle.GuestLifecycle(
            self._host, self._storage, self._get_settings,
            CONF.kvmx.domain_start_timeout, self._network, self.virtapi)
        self._snapshots = snapshot.Snapshotter(
            self._lifecycle, self._storage, CONF.kvmx.snapshot_timeout)
        self._moves = migration.ColdMigration(self._lifecycle, self._storage)
        self._rescuer = rescue.Rescuer(self._lifecycle, self._storage)
        self._live_migrations = live_migration.LiveMigrations(
            self._host, self._storage, self._lifecycle, self._network,
            self._get_settings)

    # -- host ---------------------------------------------------------------

    def init_host(self, host):
        self._host.initialize()
        try:
            self._settings = self._check_host_and_read_settings()
        except Exception:
            # nova-compute will not start: let go of libvirt and the event
            # threads initialize() started.
            self._host.close()
            raise
        os_vif.initialize()
        if CONF.pci.device_spec:
            for problem in iommu.problems(iommu.read_facts()):
                LOG.warning('PCI passthrough is configured ([pci] '
                            'device_spec) but this host is not ready for '
                            'it: %s', problem)
        LOG.info('nova-kvmx ready: libvirt %s, virt_type %s',
                 CONF.kvmx.connection_uri, CONF.kvmx.virt_type)

    def _check_host_and_read_settings(self):
        arch = self._host.get_capabilities().host.cpu.arch
        connection.check_host(self._host, CONF.kvmx.virt_type, arch)
        # CPU sets and reserved hugepages that do not fit the host stop
        # nova-compute here, not in every periodic task.
        numa = resources.host_topology(self._host)
        os.makedirs(CONF.instances_path, mode=storage.DIR_MODE,
                    exist_ok=True)
        return spec.DriverSettings(
            virt_type=CONF.kvmx.virt_type,
            cpu_mode=CONF.kvmx.cpu_mode,
            cpu_models=tuple(CONF.kvmx.cpu_models),
            machine_type=CONF.kvmx.machine_type,
            arch=arch,
            pcie_ports=CONF.libvirt.num_pcie_ports,
            vnc_listen=CONF.vnc.server_listen if CONF.vnc.enabled else None,
            package_version=version.version_string(),
            disk_cache=('none' if storage.supports_direct_io(
                CONF.instances_path) else 'writeback'),
            host_cpus=topology.guest_cpu_pools(
                numa, topology.cpu_sets(self._host.get_online_cpus())),
            small_page_kb=topology.small_page_kb(numa),
            realtime_priority=CONF.kvmx.realtime_scheduler_priority,
            cpu_control=self._host.is_cpu_control_policy_capable(),
            rng_dev_path=rng_dev_path(),
            pointer_model=CONF.pointer_model,
            rx_queue_size=CONF.libvirt.rx_queue_size,
            tx_queue_size=CONF.libvirt.tx_queue_size,
            disk_discard=CONF.libvirt.hw_disk_discard)

    def cleanup_host(self, host):
        self._host.close()

    def _get_settings(self):
        return self._settings

    def _handle_conn_event(self, enabled, reason):
        LOG.warning('libvirt connection %s: %s',
                    'restored' if enabled else 'lost', reason or '')
        availability.set_host_enabled(self.virtapi, CONF.host, enabled,
                                      reason)

    def get_available_nodes(self, refresh=False):
        return [self._host.get_hostname()]

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_available_resource(self, nodename):
        # With the node UUID of get_nodenames_by_uuid (see there).
        return dict(resources.available_resources(
            self._host, CONF.instances_path, nodename, CONF.kvmx.virt_type),
            uuid=self._host.get_node_uuid())

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        inventory = provider_tree.data(nodename).inventory
        resources.update_inventory(
            provider_tree, nodename,
            resources.inventory_totals(self._host, CONF.instances_path),
            self._get_allocation_ratios(inventory))
        resources.update_traits(provider_tree, nodename, resources.cpu_traits(
            self._host.get_capabilities(),
            planner.default_cpu_mode(self._settings),
            self._host.has_hyperthreading))

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

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        self._lifecycle.spawn(context, instance, image_meta, injected_files,
                              admin_password, network_info, block_device_info)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        self._lifecycle.destroy(instance, network_info, destroy_disks)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        self._lifecycle.destroy(instance, network_info if destroy_vifs else
                                None, destroy_disks)

    def delete_instance_files(self, instance):
        return self._storage.destroy(instance)

    def instance_on_disk(self, instance):
        return self._storage.exists(instance)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        self._lifecycle.reboot(context, instance, reboot_type,
                               CONF.kvmx.soft_reboot_timeout, network_info)

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._lifecycle.power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._lifecycle.power_on(context, instance, network_info)

    def pause(self, instance):
        self._lifecycle.pause(instance)

    def unpause(self, instance):
        self._lifecycle.unpause(instance)

    def suspend(self, context, instance):
        self._lifecycle.suspend(instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._lifecycle.resume(instance)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        self._lifecycle.resume_state_on_host_boot(context, instance,
                                                  network_info)

    # -- ports ----------------------------------------------------------------

    def attach_interface(self, context, instance, image_meta, vif):
        self._network.attach_interface(instance, image_meta, vif,
                                       CONF.kvmx.virt_type)

    def detach_interface(self, context, instance, vif):
        self._network.detach_interface(instance, instance.image_meta, vif,
                                       CONF.kvmx.virt_type)

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
            instance, network_info, migrate_data)


def rng_dev_path():
    """``[libvirt] rng_dev_path``, which must exist (Nova's
    RngDeviceNotExist otherwise: every guest gets an RNG from it)."""
    path = CONF.libvirt.rng_dev_path
    if path and not os.path.exists(path):
        raise exception.RngDeviceNotExist(path=path)
    return path
