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

"""Live migration of NFV guests, as Nova's compute manager drives it.

Nova's protocol, host by host::

    destination  check_destination -> (Nova's claim) post_claim
    source       check_source
    destination  pre_live_migration: disks (block migration), volumes
                 (connected with the destination's connection info),
                 ports
    source       live_migration: SR-IOV ports out, destination XML,
                 libvirt peer-to-peer migration, watched until it ends
    destination  post_at_destination: SR-IOV ports back in
    source       post_live_migration: volumes disconnected;
                 post_at_source: ports unplugged (Nova then cleans up)
    on failure   rollback_at_source, rollback_at_destination (volumes
                 disconnected there)

The migrate data is Nova's ``LibvirtLiveMigrateData``: the compute manager
decides clean-up and claims from its fields, as for Nova's libvirt driver.
The destination describes its claim in ``dst_numa_info`` (pins and cells,
planned by :mod:`nova_kvmx.guest.numa` with the destination's CPU sets);
the source rewrites the running domain's XML to it
(:mod:`nova_kvmx.guest.migration_xml`). Watching the job, the downtime
steps, completion timeout, forced completion and statistics
(:mod:`nova_kvmx.live_migration_job`) follow Nova's ``[libvirt]
live_migration_*`` options.
"""

import contextlib
import copy
import os

import libvirt
from lxml import etree
import nova.conf
from nova import exception
from nova.network import model as network_model
from nova.network import neutron
from nova import objects
from nova.objects import fields
from nova.virt.libvirt import config as vconfig
from nova.virt import images
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import units
from oslo_utils import uuidutils

from nova_kvmx import console
from nova_kvmx.guest import consoles
from nova_kvmx.guest import devices
from nova_kvmx.guest import firmware
from nova_kvmx.guest import migration_xml
from nova_kvmx.guest import numa
from nova_kvmx.guest import volumes as guest_volumes
from nova_kvmx import live_migration_job
from nova_kvmx import safe_xml
from nova_kvmx import storage as instance_storage
from nova_kvmx import vif
from nova_kvmx import volumes as host_volumes
from nova_kvmx import vtpm_secret

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

# Ports whose device is the host's (a VF, a PF or a macvtap on a VF):
# hot-unplugged before the migration and plugged again on the destination
# with the device Nova claimed there. macvtap is among them although Nova
# does not unplug it: its netdev name is the destination's, which the
# source cannot know.
PASSTHROUGH_VNIC_TYPES = (network_model.VNIC_TYPES_DIRECT_PASSTHROUGH +
                          (network_model.VNIC_TYPE_MACVTAP,))
_DISKS_WHERE = {True: 'on RBD', False: 'in files'}


class LiveMigrations(object):
    def __init__(self, host, storage, lifecycle_ops, network, settings):
        """:param settings: callable returning this host's DriverSettings"""
        self.host = host
        self.storage = storage
        self.lifecycle = lifecycle_ops
        self.network = network
        self.settings = settings
        self.jobs = live_migration_job.Jobs(host)
        # {instance UUID: its domain XML} of guests migrating away.
        self.departing = {}

    # -- destination: checks ------------------------------------------------

    def check_destination(self, context, instance, src_info, dst_info,
                          block_migration, disk_over_commit):
        if self.settings().virt_type == 'kvm':
            self._compare_cpu(src_info['cpu_info'])
        data = objects.LibvirtLiveMigrateData()
        data.filename = self.storage.make_probe()
        data.image_type = 'rbd' if self.storage.shared_disks else 'qcow2'
        data.graphics_listen_addr_vnc = self.settings().vnc_listen
        data.serial_listen_addr = self.settings().serial_listen
        if block_migration is not None:
            data.block_migration = block_migration
        if disk_over_commit is not None:
            data.disk_over_commit = disk_over_commit
        free_gb = dst_info['free_disk_gb' if disk_over_commit else
                           'disk_available_least']
        data.disk_available_mb = free_gb * units.Ki - \
            CONF.reserved_host_disk_mb
        data.dst_wants_file_backed_memory = False
        if instance.numa_topology:
            data.dst_supports_numa_live_migration = True
        data.dst_cpu_shared_set_info = set(
            self.settings().host_cpus.floating or ())
        if neutron.API().has_port_binding_extension(context):
            data.vifs = objects.VIFMigrateData.create_skeleton_migrate_vifs(
                instance.get_network_info())
            for migrate_vif in data.vifs:
                migrate_vif.supports_os_vif_delegation = True
        return data

    def _compare_cpu(self, cpu_info):
        """Refuse a destination whose CPU lacks what the source's offers
        (a KVM guest keeps its CPU model and features for its life)."""
        info = jsonutils.loads(cpu_info)
        cpu = vconfig.LibvirtConfigCPU()
        cpu.arch, cpu.model, cpu.vendor = (
            info['arch'], info['model'], info['vendor'])
        topology = info.get('topology') or {}
        cpu.sockets = topology.get('sockets')
        cpu.cores = topology.get('cores')
        cpu.threads = topology.get('threads')
        for name in info.get('features', ()):
            cpu.add_feature(vconfig.LibvirtConfigCPUFeature(name))
        if self.host.compare_hypervisor_cpu(cpu.to_xml()) <= 0:
            raise exception.MigrationPreCheckError(
                reason='the CPU of this host is not compatible with the '
                       'source host\'s (%s %s)' % (info['vendor'],
                                                   info['model']))

    def cleanup_destination_check(self, data):
        self.storage.remove_probe(data.filename)

    def post_claim(self, instance, data, claim):
        """Describe Nova's claim on this host (pins, cells, realtime
        scheduler) as the source rewrites the domain for it."""
        guest = numa.plan_numa(
            claim.claimed_numa_topology, claim.flavor, claim.image_meta,
            claim.image_meta.properties.get(
                'hw_machine_type', self.settings().machine_type),
            self.settings())
        info = objects.LibvirtLiveMigrateNUMAInfo()
        tuning = guest.get('cpu_tuning')
        if tuning is not None:
            info.cpu_pins = {str(vcpu): set(cpus)
                             for vcpu, cpus in tuning.vcpu_pins}
            info.emulator_pins = set(tuning.emulator_pin)
            info.cell_pins = {str(cell.id): {cell.host_cell}
                              for cell in guest['numa_cells']}
            if tuning.realtime_vcpus:
                info.sched_vcpus = set(tuning.realtime_vcpus)
                info.sched_priority = tuning.realtime_priority
        data.dst_numa_info = info
        return data

    # -- source: checks -----------------------------------------------------

    def check_source(self, context, instance, data, block_device_info):
        vtpm_secret.refuse_move(instance)
        if CONF.libvirt.live_migration_tunnelled:
            raise exception.MigrationPreCheckError(
                reason='[libvirt] live_migration_tunnelled is not supported '
                       'by nova-kvmx: use live_migration_with_native_tls')
        for bdm in host_volumes.mapping(block_device_info):
            guest_volumes.check_supported(bdm['connection_info'])
        self._check_image_type(data)
        shared = self.storage.sees_probe(data.filename)
        data.is_shared_instance_path = shared
        volume_backed = host_volumes.root_volume(block_device_info) \
            is not None
        # Every local disk of a guest lives in its instance directory; a
        # guest whose disks are all volumes or RBD images has nothing to
        # copy (Nova's rule: shared block storage).
        data.is_shared_block_storage = shared or (
            (volume_backed or self.storage.shared_disks) and
            not self._local_disks(instance, volume_backed))
        on_shared = shared or data.is_shared_block_storage
        if 'block_migration' not in data:
            data.block_migration = not on_shared
        if data.block_migration and on_shared:
            raise exception.InvalidLocalStorage(
                path=self.storage.instances_path,
                reason='block migration cannot be used with shared '
                       'storage (shared instance storage, or only volumes)')
        if not data.block_migration and not on_shared:
            raise exception.InvalidSharedStorage(
                path=self.storage.instances_path,
                reason='the instances directory is not shared with the '
                       'destination: use block migration')
        if data.block_migration and 'disk_over_commit' in data:
            self._check_disk_space(instance, data)
        data.instance_relative_path = instance.uuid
        if instance.numa_topology:
            data.src_supports_numa_live_migration = True
        if (self.settings().serial_listen is not None and
                not data.serial_listen_addr):
            # Nova's libvirt driver's check (when the migration starts).
            raise exception.MigrationPreCheckError(
                reason='the destination has no serial console ([serial_'
                       'console] enabled) for the guest\'s TCP serial ports')
        return data

    def _check_image_type(self, data):
        """Both hosts keep instance disks alike: on RBD, or in files."""
        mine = 'rbd' if self.storage.shared_disks else 'qcow2'
        theirs = data.image_type if 'image_type' in data else 'qcow2'
        if (mine == 'rbd') != (theirs == 'rbd'):
            raise exception.MigrationPreCheckError(
                reason='this host keeps instance disks %s, the destination '
                       '%s ([libvirt] images_type)' % (
                           _DISKS_WHERE[mine == 'rbd'],
                           _DISKS_WHERE[theirs == 'rbd']))

    def _check_disk_space(self, instance, data):
        key = 'disk_size' if data.disk_over_commit else 'virt_disk_size'
        needed = sum(d[key] for d in self.disk_info(instance))
        available = (data.disk_available_mb or 0) * units.Mi
        if needed > available:
            raise exception.MigrationPreCheckError(
                reason='the disks of %s need %d MiB on the destination, it '
                       'has %d MiB' % (instance.uuid, needed // units.Mi,
                                       available // units.Mi))

    def _local_disks(self, instance, volume_backed):
        """The instance's writable local disks (what a block migration
        copies), by path."""
        files = self.storage.files_of(instance, volume_backed)
        return [path for path in instance_storage.local_disks(files)
                if os.path.exists(path)]

    def disk_info(self, instance):
        """The instance's local disks, as Nova's get_instance_disk_info
        describes them (a list of dicts). A running guest's disks are QEMU's
        user's (libvirt's DAC gave them to it): where nova-compute cannot
        read them, their format, base and size come from libvirt."""
        files = self.storage.files_of(instance)
        held = None
        result = []
        for path in instance_storage.local_disks(files) + [
                files.config_drive]:
            if not path or not os.path.exists(path):
                continue
            if held is None and not os.access(path, os.R_OK,
                                              effective_ids=True):
                held = held_disks(self._running_guest(instance))
            if held and path in held:
                file_format, backing_file, virtual_size = held[path]
                # What qemu-img calls the disk size: the blocks in use.
                disk_size = os.stat(path).st_blocks * 512
            else:
                info = images.qemu_img_info(path)
                file_format, backing_file = (info.file_format,
                                             info.backing_file or '')
                virtual_size, disk_size = info.virtual_size, info.disk_size
            result.append({
                'type': file_format, 'path': path,
                'virt_disk_size': virtual_size,
                'backing_file': backing_file,
                'disk_size': disk_size,
                'over_committed_disk_size': max(
                    0, virtual_size - disk_size)})
        return result

    def _running_guest(self, instance):
        try:
            guest = self.host.get_guest(instance)
        except exception.InstanceNotFound:
            return None
        return guest if guest.is_active() else None

    # -- destination: before and after -------------------------------------

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, data):
        """Make this host ready to receive the guest: the devices Nova
        claimed here must exist, the guest's disks (for a block
        migration: overlays on the same images, filled by the copy), its
        volumes (connected with this host's connection info, which the
        source's domain XML is rewritten to) and its ports (as bound
        here). Nothing stays behind on failure."""
        self._check_claimed_devices(context, instance, data)
        bdms = host_volumes.mapping(block_device_info)
        for bdm in bdms:
            guest_volumes.check_supported(bdm['connection_info'])
        # The serial console's ports here, which the source writes into
        # the domain it sends (as Nova's libvirt driver does).
        listen = self.settings().serial_listen
        serial = console.acquire_serial_ports(
            listen, consoles.serial_port_count(
                instance.flavor, instance.image_meta, self.settings()))
        try:
            self._receive(context, instance, block_device_info,
                          network_info, data, bdms)
        except Exception:
            with excutils.save_and_reraise_exception():
                console.release_serial_ports(listen, serial)
        data.target_connect_addr = CONF.libvirt.live_migration_inbound_addr
        data.serial_listen_ports = list(serial)
        data.supported_perf_events = []
        return data

    def _receive(self, context, instance, block_device_info, network_info,
                 data, bdms):
        """The files, volumes and ports of pre_live_migration."""
        created = not data.is_shared_instance_path
        if created:
            inst_dir = self.storage.instance_dir(instance)
            if os.path.exists(inst_dir):
                raise exception.DestinationDiskExists(path=inst_dir)
            # The config drive is rebuilt from the instance's metadata
            # (read-only disks are not copied by the migration).
            self.storage.prepare(
                context, instance, instance.image_meta,
                network_info=network_info, volume_backed=(
                    host_volumes.root_volume(block_device_info)
                    is not None),
                disks=not data.is_shared_block_storage)
        volumes = self.lifecycle.volumes
        connected = False
        try:
            volumes.connect_all(context, instance, bdms)
            connected = True
            data.bdms = [self._bdm_info(instance, bdm) for bdm in bdms]
            self.network.plug_all(instance, dest_network_info(
                data, network_info))
        except Exception:
            with excutils.save_and_reraise_exception():
                if connected:
                    volumes.disconnect_all(context, instance, bdms)
                if created:
                    self.storage.discard(instance, shared_disks=False)

    @staticmethod
    def _bdm_info(instance, bdm):
        """Nova's description of a volume as connected here, which the
        source turns into the disk of the domain it sends."""
        info = host_volumes.disk_info(bdm, instance)
        bdmi = objects.LibvirtLiveMigrateBDMInfo()
        bdmi.serial = guest_volumes.volume_id(bdm['connection_info'])
        bdmi.connection_info = bdm['connection_info']
        bdmi.bus = info.bus
        bdmi.dev = info.dev
        bdmi.type = info.device_type
        bdmi.format = None
        if info.boot_index is not None and info.boot_index >= 0:
            # As Nova's blockinfo records it: libvirt counts from 1.
            bdmi.boot_index = info.boot_index + 1
        return bdmi

    def _check_claimed_devices(self, context, instance, data):
        """The PCI devices Nova claimed here (for the flavor and for the
        ports' destination bindings) must still be known to libvirt: the
        tracker claims from its last report."""
        ports = {devices.port_pci_slot(port): port['id']
                 for port in dest_bound_ports(data)
                 if devices.port_pci_slot(port)}
        node = objects.ComputeNode.get_by_nodename(
            context, self.host.get_hostname())
        claimed = []
        for dev in objects.PciDeviceList.get_by_compute_node(
                context, node.id):
            if (dev.instance_uuid != instance.uuid or
                    dev.status != fields.PciDeviceStatus.CLAIMED):
                continue
            address = devices.pci_address(dev.address)
            claimed.append((address, 'port %s' % ports[address]
                            if address in ports else
                            'the flavor\'s PCI alias request', dev))
        vif.check_host_devices(self.host, claimed)

    def post_at_destination(self, context, instance, network_info):
        """Plug the SR-IOV ports back, with the devices bound here, and
        log what the migration cost the guest."""
        guest = self.host.get_guest(instance)
        present = interface_macs(guest.get_xml_desc())
        for port in network_info or []:
            if (port['vnic_type'] in PASSTHROUGH_VNIC_TYPES and
                    devices.port_mac(port) not in present):
                self.network.attach_interface(
                    context, instance, instance.image_meta, port,
                    self.settings().virt_type)
        self.jobs.log_completed(guest, instance)

    def rollback_at_destination(self, instance, network_info, data,
                                block_device_info=None, context=None):
        """Remove what pre_live_migration made (and an incoming domain
        libvirt left behind): ports, volume connections, and the files
        only when they are this host's own, never the shared instance
        directory."""
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
        if (data is not None and data.obj_attr_is_set('serial_listen_addr')
                and data.obj_attr_is_set('serial_listen_ports')):
            console.release_serial_ports(data.serial_listen_addr,
                                         data.serial_listen_ports)
        self.network.unplug_all(instance, dest_network_info(
            data, network_info))
        self.lifecycle.volumes.disconnect_all(
            context, instance, host_volumes.mapping(block_device_info),
            force=True)
        if data is not None and not data.is_shared_instance_path:
            # The source's guest keeps its disks on RBD.
            self.storage.destroy(instance, shared_disks=False)

    # -- source: the migration ----------------------------------------------

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, data):
        guest = self.host.get_guest(instance)
        with self.jobs.tracking(instance):
            try:
                self._unplug_passthrough_ports(context, instance, data)
                source_xml = guest.get_xml_desc(dump_migratable=True)
                xml = migration_xml.destination_xml(
                    source_xml, self.destination_host(instance, data))
                # libvirt removes the domain here when the migration
                # succeeds: its ports are released by post_at_source.
                self.departing[instance.uuid] = source_xml
            except Exception as ex:
                LOG.exception('Live migration to %s not started', dest,
                              instance=instance)
                recover_method(context, instance, dest, data)
                live_migration_job.report_failure(
                    context, instance, ex if isinstance(
                        ex, exception.NovaException) else
                    exception.MigrationError(reason=ex))
                return
            self.jobs.run(context, instance, guest, dest, xml, data,
                          post_method, recover_method,
                          self._disks_to_copy(guest, data))

    def _unplug_passthrough_ports(self, context, instance, data):
        for port in source_passthrough_ports(data):
            LOG.info('Unplugging port %s for the live migration',
                     port['id'], instance=instance)
            self.network.detach_interface(context, instance,
                                          instance.image_meta, port,
                                          self.settings().virt_type)

    def destination_host(self, instance, data):
        """What the destination's migrate data says the domain becomes."""
        fields = {}
        info = data.dst_numa_info if 'dst_numa_info' in data else None
        if info is not None and 'cpu_pins' in info and 'cell_pins' in info:
            fields.update(
                vcpu_pins=tuple(sorted(
                    (int(vcpu), frozenset(cpus))
                    for vcpu, cpus in info.cpu_pins.items())),
                emulator_pin=frozenset(info.emulator_pins),
                cell_nodes=tuple(sorted(
                    (int(cell), _one_node(nodes))
                    for cell, nodes in info.cell_pins.items())),
                cell_pages=self._claimed_pages(instance))
            if 'sched_vcpus' in info and 'sched_priority' in info:
                fields.update(realtime_vcpus=frozenset(info.sched_vcpus),
                              realtime_priority=info.sched_priority)
        elif 'dst_cpu_shared_set_info' in data:
            fields['floating'] = frozenset(data.dst_cpu_shared_set_info)
        if data.obj_attr_is_set('graphics_listen_addr_vnc') and \
                data.graphics_listen_addr_vnc:
            fields['vnc_listen'] = str(data.graphics_listen_addr_vnc)
        if data.obj_attr_is_set('serial_listen_addr') and \
                data.serial_listen_addr:
            fields.update(serial_listen=str(data.serial_listen_addr),
                          serial_ports=tuple(data.serial_listen_ports or ()))
        if 'pci_dev_map_src_dst' in data:
            fields['hostdevs'] = tuple(
                (devices.pci_address(src), devices.pci_address(dst))
                for src, dst in sorted(data.pci_dev_map_src_dst.items()))
        fields['interfaces'] = tuple(
            devices.plan_port(port, instance.flavor, instance.image_meta,
                              self.settings().virt_type)
            for port in dest_bound_ports(data)
            if port['vnic_type'] not in PASSTHROUGH_VNIC_TYPES)
        fields['volumes'] = tuple(
            self.lifecycle.volumes.disk(bdmi.connection_info,
                                        _disk_info(bdmi))
            for bdmi in (data.bdms if 'bdms' in data else [])
            if bdmi.obj_attr_is_set('connection_info_json') and
            bdmi.connection_info)
        return migration_xml.DestinationHost(**fields)

    def _claimed_pages(self, instance):
        context = instance.migration_context
        if context is None or context.new_numa_topology is None:
            return None
        return tuple(
            (cell.id, cell.page_size_kb) for cell in numa.plan_cells(
                context.new_numa_topology, self.settings().small_page_kb))

    @staticmethod
    def _disks_to_copy(guest, data):
        """[(target device, path)] of the writable file disks: what a
        block migration copies (the read-only config drive is rebuilt on
        the destination instead)."""
        if not data.block_migration:
            return []
        return [(disk.target_dev, disk.source_path)
                for disk in guest.get_all_disks()
                if disk.source_type == 'file' and not disk.readonly and
                not disk.shareable]

    def force_complete(self, instance):
        self.jobs.request(instance, 'force-complete')

    def abort(self, instance):
        self.jobs.abort(instance)

    # -- source: after ------------------------------------------------------

    def post_live_migration(self, context, instance, block_device_info):
        """Let go of the volumes here: the guest uses the destination's
        connections now (``block_device_info`` still has this host's)."""
        for bdm in host_volumes.mapping(block_device_info):
            # As Nova: a failure must not leave the instance in ERROR
            # and still on this host.
            self.lifecycle.volumes.disconnect_quietly(
                context, bdm['connection_info'], instance)

    def post_at_source(self, instance, network_info):
        """The guest runs on the destination: its ports here are unplugged
        and its serial console's ports free."""
        self.network.unplug_all(instance, network_info)
        source_xml = self.departing.pop(instance.uuid, None)
        if source_xml is not None:
            console.release_domain_serial_ports(source_xml)
            remove_nvram(self.host, source_xml, instance)

    def rollback_at_source(self, context, instance, data):
        """Give the guest back the SR-IOV ports unplugged for the
        migration, with their devices on this host (its serial console's
        ports stay its own)."""
        self.departing.pop(instance.uuid, None)
        guest = self.host.get_guest(instance)
        present = interface_macs(guest.get_xml_desc())
        for port in source_passthrough_ports(data):
            if devices.port_mac(port) not in present:
                self.network.attach_interface(
                    context, instance, instance.image_meta, port,
                    self.settings().virt_type)


def remove_nvram(host, domain_xml, instance):
    """The UEFI NVRAM file a live-migrated guest left on this host:
    libvirt 9.0 removes the source's domain (VIR_MIGRATE_UNDEFINE_SOURCE)
    but not its NVRAM, whose contents the destination has now.

    The file is libvirtd's, in its own directory, which nova-compute's
    user cannot write: libvirt removes it, as it removes a domain's NVRAM
    when undefining the domain with VIR_DOMAIN_UNDEFINE_NVRAM. A
    placeholder domain that names that NVRAM and the guest's firmware,
    and nothing else, is defined (never started) and at once undefined
    so. Its name and UUID are its own: no instance's."""
    chosen = firmware.chosen_firmware(domain_xml)
    if chosen is None or not chosen.nvram:
        return
    guest = None
    try:
        guest = host.write_instance_config(
            nvram_placeholder_xml(domain_xml, chosen))
        guest.delete_configuration(keep_vtpm=True, keep_nvram=False)
    except libvirt.libvirtError as ex:
        LOG.warning('Could not remove the NVRAM file %s the guest left '
                    'here: %s', chosen.nvram, ex, instance=instance)
        if guest is not None:
            with contextlib.suppress(libvirt.libvirtError):
                guest.delete_configuration(keep_vtpm=True, keep_nvram=True)


def nvram_placeholder_xml(domain_xml, chosen):
    """A domain of the type, machine, firmware and features of
    ``domain_xml`` (its firmware.Chosen ``chosen``), with a name and a
    UUID of its own, no device."""
    source = safe_xml.fromstring(domain_xml)
    domain = etree.Element('domain', type=source.get('type', 'kvm'))
    placeholder_uuid = uuidutils.generate_uuid()
    etree.SubElement(domain, 'name').text = 'kvmx-nvram-' + placeholder_uuid
    etree.SubElement(domain, 'uuid').text = placeholder_uuid
    etree.SubElement(domain, 'memory', unit='KiB').text = str(16 * units.Ki)
    etree.SubElement(domain, 'vcpu').text = '1'
    os_element = etree.SubElement(domain, 'os')
    os_type = etree.SubElement(os_element, 'type')
    os_type.text = 'hvm'
    source_type = source.find('./os/type')
    for name in ('arch', 'machine'):
        if source_type is not None and source_type.get(name):
            os_type.set(name, source_type.get(name))
    loader = etree.SubElement(os_element, 'loader')
    loader.text = chosen.loader
    if chosen.loader_type:
        loader.set('type', chosen.loader_type)
    if chosen.readonly is not None:
        loader.set('readonly', 'yes' if chosen.readonly else 'no')
    if chosen.secure:
        loader.set('secure', 'yes')
    nvram = etree.SubElement(os_element, 'nvram')
    nvram.text = chosen.nvram
    if chosen.nvram_template:
        nvram.set('template', chosen.nvram_template)
    # The guest's own (libvirt wants ACPI with UEFI, SMM with secure
    # boot).
    features = source.find('./features')
    if features is not None:
        domain.append(copy.deepcopy(features))
    return etree.tostring(domain, encoding='unicode')


def held_disks(guest):
    """{path: (format, backing file or '', virtual size)} of a running
    ``guest``'s file disks, as libvirt reports them; empty for None."""
    if guest is None:
        return {}
    held = {}
    for disk in guest.get_all_disks():
        if disk.source_type != 'file' or not disk.source_path:
            continue
        backing = disk.backing_store
        held[disk.source_path] = (
            disk.driver_format or 'raw',
            (backing.source_file or '') if backing is not None else '',
            guest._domain.blockInfo(disk.target_dev)[0])
    return held


def _disk_info(bdmi):
    """guest.volumes.DiskInfo of a LibvirtLiveMigrateBDMInfo."""
    boot = bdmi.boot_index if bdmi.obj_attr_is_set('boot_index') else None
    return guest_volumes.DiskInfo(
        dev=bdmi.dev, bus=bdmi.bus, device_type=bdmi.type or 'disk',
        boot_index=boot - 1 if boot else None)


def interface_macs(domain_xml):
    """The MACs of a domain's interfaces, lower case."""
    return {mac.get('address', '').lower() for mac in vif.devices_root(
        domain_xml).findall('./devices/interface/mac')}


def _one_node(nodes):
    if len(nodes) != 1:
        raise exception.MigrationError(
            reason='a guest NUMA cell must be bound to one host node, the '
                   'destination claimed %s' % sorted(nodes))
    return next(iter(nodes))


def _migrate_vifs(data):
    return list(data.vifs) if data is not None and 'vifs' in data and \
        data.vifs else []


def source_passthrough_ports(data):
    """The ports (as bound on the source) to unplug for the migration."""
    return [v.source_vif for v in _migrate_vifs(data)
            if 'source_vif' in v and v.source_vif and
            v.source_vif['vnic_type'] in PASSTHROUGH_VNIC_TYPES]


def dest_bound_ports(data):
    """The ports as bound on the destination, where Nova bound them."""
    return [v.get_dest_vif() for v in _migrate_vifs(data)
            if 'source_vif' in v and 'vif_type' in v]


def dest_network_info(data, network_info):
    """The ports to plug on the destination: their destination bindings
    when Neutron has them, else the instance's ports."""
    ports = dest_bound_ports(data)
    return network_model.NetworkInfo(ports) if ports else network_info
