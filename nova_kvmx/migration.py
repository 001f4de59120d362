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

"""Resize and cold migration: the guest stops, its disks move, and a new
domain realises the *new* claim; revert brings back the old one exactly.

The source keeps its instance directory as ``<uuid>_resize`` until the
move is confirmed (then it is removed) or reverted (then it is the
instance directory again and the domain is rendered from the instance as
Nova restored it: old flavor, old NUMA claim, old PCI devices).

The source copies the disks into the destination's instance directory:
with ``cp`` where both hosts see the same instances path (this host, or
shared instance storage), otherwise over Nova's remote filesystem
transport (``[libvirt] remote_filesystem_transport``: ssh/scp or rsync,
with the compute hosts' SSH trust set up as for Nova's libvirt driver).
Swap is not copied: the destination makes a fresh one. The disks are
qcow2 overlays; the destination fetches or recreates the cached bases
they need. A copy that fails leaves the guest running where it was.

Volumes are not copied: the source disconnects them once the guest is
stopped, the destination connects them with the connection info Cinder
gave it (Nova's compute manager moves the attachments), and a revert
connects them at the source again.

Disks on RBD (``[libvirt] images_type = rbd``) are not copied either:
every host reaches them. As Nova's libvirt driver does, the destination
takes an RBD snapshot (``nova-resize``) of the root and ephemeral disks
before it grows them; a revert rolls them back to it (their size too), a
confirmation removes it; the swap disk is made afresh at each end.
"""

import os
import shutil
import socket

import nova.conf
from nova import exception
from nova.virt import images
from nova.virt.libvirt import utils as libvirt_utils
from nova.virt.libvirt.volume import remotefs
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import units
from oslo_utils import uuidutils

from nova_kvmx import console
from nova_kvmx import device_metadata
from nova_kvmx import storage as instance_storage
from nova_kvmx.storage import rbd as rbd_storage
from nova_kvmx import vif_events
from nova_kvmx import vtpm_secret
from nova_kvmx import volumes as host_volumes

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

RESIZE_SUFFIX = '_resize'
# What moves with the guest, as it is (swap is made afresh, the console
# log stays with the host that wrote it).
_MOVED_FILES = ('disk', 'disk.eph0', 'kernel', 'ramdisk', 'disk.config')


class ColdMigration(object):
    def __init__(self, lifecycle, storage):
        self.lifecycle = lifecycle
        self.storage = storage
        self.remote = remotefs.RemoteFilesystem()

    def resize_dir(self, instance):
        return self.storage.instance_dir(instance) + RESIZE_SUFFIX

    # -- source -------------------------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        """Stop the guest, keep its files aside and copy them to ``dest``.

        :raises: InstanceFaultRollback (the guest is left as it was) for a
            move this driver cannot make or a copy that fails
        """
        inst_dir = self.storage.instance_dir(instance)
        try:
            check_no_shrink(instance.flavor, flavor,
                            host_volumes.root_volume(block_device_info)
                            is not None)
            vtpm_secret.refuse_move(instance)
            remote = None if self.shares_storage_with(dest) else dest
            if remote:
                self.remote_mkdir(remote, inst_dir)
        except exception.NovaException as ex:
            raise exception.InstanceFaultRollback(inner_exception=ex)
        guest = self.lifecycle.find_guest(instance)
        was_running = guest is not None and guest.is_active()
        self.lifecycle.power_off(instance, timeout, retry_interval)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
        self.lifecycle.network.unplug_all(instance, network_info)
        self.lifecycle.volumes.disconnect_all(
            context, instance, host_volumes.mapping(block_device_info))
        shutil.rmtree(self.resize_dir(instance), ignore_errors=True)
        os.rename(inst_dir, self.resize_dir(instance))
        try:
            self.send_files(self.resize_dir(instance), inst_dir, remote)
        except Exception as ex:
            LOG.exception('Copying the guest\'s files to %s failed', dest,
                          instance=instance)
            self.restore_source(context, instance, network_info, remote,
                                was_running)
            raise exception.InstanceFaultRollback(
                inner_exception=exception.ResizeError(
                    reason='copying the disks to %s failed: %s' % (
                        dest, command_error(ex))))
        LOG.info('Guest stopped and its files copied to %s', dest,
                 instance=instance)
        return jsonutils.dumps([])

    def shares_storage_with(self, dest):
        """Whether ``dest`` (the destination's IP) sees this host's
        instances path: it is this host, or a file made there through
        the remote filesystem transport shows up here."""
        local = {CONF.my_ip, CONF.host, socket.gethostname(), '127.0.0.1',
                 '::1'}
        if dest in local:
            return True
        probe = os.path.join(self.storage.instances_path,
                             uuidutils.generate_uuid(dashed=False) + '.tmp')
        try:
            self.remote.create_file(dest, probe)
        except processutils.ProcessExecutionError as ex:
            # Not necessarily a reason to refuse: remote_mkdir tells.
            LOG.warning('Could not create %s on %s: %s', probe, dest, ex)
            return False
        if os.path.exists(probe):
            os.unlink(probe)
            return True
        try:
            self.remote.remove_file(dest, probe)
        except processutils.ProcessExecutionError as ex:
            LOG.warning('Could not remove %s on %s: %s', probe, dest, ex)
        return False

    def remote_mkdir(self, dest, path):
        try:
            self.remote.create_dir(dest, path)
        except processutils.ProcessExecutionError as ex:
            raise exception.ResizeError(
                reason='cannot reach %s through the remote filesystem '
                       'transport (%s): %s' % (
                           dest, CONF.libvirt.remote_filesystem_transport,
                           command_error(ex)))

    @staticmethod
    def send_files(source_dir, inst_dir, remote):
        """Copy the guest's files into ``inst_dir``, on ``remote`` (an
        address) or here; ``cp``/scp/rsync keep sparse disks sparse."""
        if remote is None:
            os.makedirs(inst_dir, mode=instance_storage.DIR_MODE)
        for name in _MOVED_FILES:
            path = os.path.join(source_dir, name)
            if os.path.exists(path):
                instance_storage.reclaim(path)
                libvirt_utils.copy_image(
                    path, os.path.join(inst_dir, name), host=remote,
                    compression=name.startswith('disk'))

    def restore_source(self, context, instance, network_info, remote,
                       was_running):
        """Undo a move whose copy failed: remove what was copied and bring
        the guest back as it was."""
        inst_dir = self.storage.instance_dir(instance)
        if remote:
            try:
                self.remote.remove_dir(remote, inst_dir)
            except processutils.ProcessExecutionError as ex:
                LOG.warning('Could not remove %s on %s: %s', inst_dir,
                            remote, ex, instance=instance)
        else:
            shutil.rmtree(inst_dir, ignore_errors=True)
        os.rename(self.resize_dir(instance), inst_dir)
        # Nova's database still has the source's connections.
        self.start_or_define(context, instance, network_info, was_running,
                             host_volumes.instance_block_device_info(
                                 context, instance))

    def confirm_migration(self, context, migration, instance, network_info):
        shutil.rmtree(self.resize_dir(instance), ignore_errors=True)
        if self.storage.rbd is not None:
            self.storage.rbd.drop_resize_snapshot(instance)
        LOG.info('Move confirmed: the old files are gone', instance=instance)

    # -- destination ----------------------------------------------------------

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        """Size the copied files to the new flavor and start a new domain
        from the instance as Nova now holds it (the new flavor and NUMA
        claim)."""
        inst_dir = self.storage.instance_dir(instance)
        try:
            if not os.path.isdir(inst_dir):
                raise exception.ResizeError(
                    reason='the guest\'s files never arrived in %s' %
                           inst_dir)
            self.adopt_files(context, instance, inst_dir)
            self.start_or_define(context, instance, network_info, power_on,
                                 block_device_info)
        except Exception:
            with excutils.save_and_reraise_exception():
                shutil.rmtree(inst_dir, ignore_errors=True)
        LOG.info('Guest moved', instance=instance)

    def adopt_files(self, context, instance, inst_dir):
        """Make the copied files this host's: their bases in the image
        cache, sizes of the new flavor, a fresh swap, private modes."""
        if self.storage.rbd is not None:
            self.resize_rbd_disks(instance)
            instance_storage.seal(inst_dir)
            return
        flavor = instance.flavor
        for name in ('disk', 'disk.eph0'):
            path = os.path.join(inst_dir, name)
            if os.path.exists(path):
                self.rebase_onto_local_cache(context, instance, path)
        root = os.path.join(inst_dir, 'disk')
        if os.path.exists(root) and flavor.root_gb:
            grow(root, flavor.root_gb)
            self.storage.allocate(root, flavor.root_gb * units.Gi)
        ephemeral = os.path.join(inst_dir, 'disk.eph0')
        if flavor.ephemeral_gb and os.path.exists(ephemeral):
            grow(ephemeral, flavor.ephemeral_gb)
            self.storage.allocate(ephemeral, flavor.ephemeral_gb * units.Gi)
        elif flavor.ephemeral_gb:
            self.storage.create_ephemeral(instance, flavor.ephemeral_gb,
                                          instance.get('os_type', None))
        swap = os.path.join(inst_dir, 'disk.swap')
        if os.path.exists(swap):
            os.unlink(swap)
        if flavor.swap:
            # Swap holds nothing to keep: a fresh one of the new size.
            self.storage.create_swap(instance, flavor.swap)
        instance_storage.seal(inst_dir)

    def resize_rbd_disks(self, instance):
        """The disks on RBD at the new flavor's sizes, after a snapshot
        for a revert: root and ephemeral grown (or a new ephemeral
        disk), a fresh swap disk."""
        rbd = self.storage.rbd
        flavor = instance.flavor
        rbd.snapshot_for_resize(instance)
        on_rbd = rbd.disks_of(instance)
        if rbd_storage.ROOT in on_rbd and flavor.root_gb:
            rbd.grow(instance, rbd_storage.ROOT, flavor.root_gb * units.Gi)
        if rbd_storage.EPHEMERAL in on_rbd and flavor.ephemeral_gb:
            rbd.grow(instance, rbd_storage.EPHEMERAL,
                     flavor.ephemeral_gb * units.Gi)
        elif flavor.ephemeral_gb:
            self.storage.create_ephemeral(instance, flavor.ephemeral_gb,
                                          instance.get('os_type', None))
        self.fresh_rbd_swap(instance, on_rbd)

    def fresh_rbd_swap(self, instance, on_rbd):
        """Swap holds nothing to keep: one of the flavor's size."""
        if rbd_storage.SWAP in on_rbd:
            self.storage.rbd.remove(instance, [rbd_storage.SWAP])
        if instance.flavor.swap:
            self.storage.create_swap(instance, instance.flavor.swap)

    def rebase_onto_local_cache(self, context, instance, overlay):
        """An overlay from another host needs its base in this host's
        image cache: the instance's image is fetched from Glance, a
        blank disk is made again (once per host, as for a spawn)."""
        backing = images.qemu_img_info(overlay, format='qcow2').backing_file
        if not backing:
            return
        base = self.storage.base_for(context, instance, backing)
        if base is None:
            raise exception.ResizeError(
                reason='the base %s of %s is neither the instance\'s image '
                       'nor a blank disk' % (backing, overlay))
        if base != backing:
            # This host's instances path is another one.
            processutils.execute(
                'qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F',
                instance_storage.base_format(base), '-b', base, overlay)

    def start_or_define(self, context, instance, network_info, power_on,
                        block_device_info, events=()):
        """Connect the volumes here, then start the guest (after Neutron's
        ``events``, see lifecycle.start_with_network), or only define it;
        a failure leaves the volumes disconnected. The instance's device
        metadata is the new domain's."""
        bdms = host_volumes.mapping(block_device_info)
        volumes = self.lifecycle.volumes
        volumes.connect_all(context, instance, bdms)
        try:
            xml = self.lifecycle.domain_xml(
                context, instance, instance.image_meta,
                self.storage.files_of(
                    instance, host_volumes.root_volume(block_device_info)
                    is not None), network_info, bdms)
            if power_on:
                self.lifecycle.start_with_network(instance, xml,
                                                  network_info, events,
                                                  context=context)
            else:
                self.define(xml)
        except Exception:
            with excutils.save_and_reraise_exception():
                volumes.disconnect_all(context, instance, bdms)
        # As Nova's libvirt driver for a move: the device metadata (tags
        # with the bus addresses) of the new domain; Nova's compute manager
        # saves the instance.
        device_metadata.refresh(
            context, instance, self.lifecycle.host.get_guest(
                instance).get_xml_desc(dump_inactive=True), network_info)

    def define(self, xml):
        """Define the domain, not started; a failure gives back its serial
        console's ports."""
        try:
            self.lifecycle.host.write_instance_config(xml)
        except Exception:
            with excutils.save_and_reraise_exception():
                console.release_domain_serial_ports(xml)

    # -- revert (source) ------------------------------------------------

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        """The kept files become the instance's again and the domain is
        rendered from the instance as Nova restored it.

        As Nova's libvirt driver does, a revert waits for Neutron's events
        of the ports Nova sees down (spawn's rule); finish_migration and a
        restart after a failed copy do not (see vif_events).
        """
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
        self.lifecycle.network.unplug_all(instance, network_info)
        inst_dir = self.storage.instance_dir(instance)
        if os.path.exists(self.resize_dir(instance)):
            shutil.rmtree(inst_dir, ignore_errors=True)
            os.rename(self.resize_dir(instance), inst_dir)
        if self.storage.rbd is not None:
            # Nova restored the old flavor: the disks as they were.
            self.storage.rbd.revert_resize(instance)
            self.fresh_rbd_swap(instance,
                                self.storage.rbd.disks_of(instance))
        self.start_or_define(
            context, instance, network_info, power_on, block_device_info,
            vif_events.for_plug(network_info,
                                self.lifecycle.settings().virt_type,
                                power_on))
        LOG.info('Move reverted', instance=instance)


def command_error(ex):
    """What a failed copy or ssh command said, for the user."""
    if isinstance(ex, processutils.ProcessExecutionError):
        return ex.stderr.strip() or ex.description
    return str(ex)


def check_no_shrink(old, new, volume_backed=False):
    """Disks only grow (as with Nova's libvirt driver); the flavor's root
    disk size means nothing to a guest whose root disk is a volume."""
    for what, before, after in (('root', old.root_gb, new.root_gb),
                                ('ephemeral', old.ephemeral_gb,
                                 new.ephemeral_gb)):
        if what == 'root' and volume_backed:
            continue
        if after < before:
            raise exception.ResizeError(
                reason='Unable to resize the %s disk down from %d GB to '
                       '%d GB.' % (what, before, after))


def grow(path, size_gb):
    """Grow a qcow2 disk to ``size_gb`` (never shrink; 0 keeps it)."""
    if not size_gb:
        return
    wanted = size_gb * units.Gi
    if images.qemu_img_info(path, format='qcow2').virtual_size < wanted:
        processutils.execute('qemu-img', 'resize', '-f', 'qcow2', path,
                             str(wanted))
