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
Nova restored it: old flavor, old NUMA claim, old PCI devices). Disks
move only where the destination sees the same instances path (this host,
or shared instance storage); other moves are refused before the guest is
touched, with the instance back to ACTIVE.
"""

import os
import shutil
import socket

import nova.conf
from nova import exception
from nova.virt import images
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

from nova_kvmx import lifecycle as guest_lifecycle

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

RESIZE_SUFFIX = '_resize'
# Files copied to the new instance directory as they are; disks are
# handled one by one.
_KEPT_FILES = ('kernel', 'ramdisk', 'disk.config')


class ColdMigration(object):
    def __init__(self, lifecycle, storage):
        self.lifecycle = lifecycle
        self.storage = storage

    def resize_dir(self, instance):
        return self.storage.instance_dir(instance) + RESIZE_SUFFIX

    # -- source -------------------------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        """Stop the guest and keep its files aside for the destination.

        :raises: InstanceFaultRollback (the guest is left as it was) for a
            move this driver cannot make
        """
        try:
            guest_lifecycle.reject_volumes(block_device_info)
            check_no_shrink(instance.flavor, flavor)
            if not self.shares_storage_with(dest):
                raise exception.MigrationPreCheckError(reason=(
                    'nova-kvmx moves disks only to a host that shares the '
                    'instances path %s; %s does not' % (
                        CONF.instances_path, dest)))
        except exception.NovaException as ex:
            raise exception.InstanceFaultRollback(inner_exception=ex)
        self.lifecycle.power_off(instance, timeout, retry_interval)
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
        self.lifecycle.network.unplug_all(instance, network_info)
        inst_dir = self.storage.instance_dir(instance)
        shutil.rmtree(self.resize_dir(instance), ignore_errors=True)
        os.rename(inst_dir, self.resize_dir(instance))
        LOG.info('Guest stopped and its files kept for the move to %s',
                 dest, instance=instance)
        return jsonutils.dumps([])

    @staticmethod
    def shares_storage_with(dest):
        """Whether ``dest`` (the destination's IP) sees this host's
        instances path: only when it is this host."""
        local = {CONF.my_ip, CONF.host, socket.gethostname(), '127.0.0.1',
                 '::1'}
        return dest in local

    def confirm_migration(self, context, migration, instance, network_info):
        shutil.rmtree(self.resize_dir(instance), ignore_errors=True)
        LOG.info('Move confirmed: the old files are gone', instance=instance)

    # -- destination ----------------------------------------------------------

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        """New instance files from the kept ones, sized to the new flavor,
        and a new domain from the instance as Nova now holds it (the new
        flavor and NUMA claim)."""
        inst_dir = self.storage.instance_dir(instance)
        try:
            self.copy_disks(self.resize_dir(instance), inst_dir,
                            instance.flavor)
            self.start_or_define(context, instance, network_info, power_on)
        except Exception:
            shutil.rmtree(inst_dir, ignore_errors=True)
            raise
        LOG.info('Guest moved', instance=instance)

    def copy_disks(self, source_dir, inst_dir, flavor):
        os.makedirs(inst_dir, mode=0o711)
        for name in ('disk',) + _KEPT_FILES:
            path = os.path.join(source_dir, name)
            if os.path.exists(path):
                shutil.copy2(path, os.path.join(inst_dir, name))
        grow(os.path.join(inst_dir, 'disk'), flavor.root_gb)
        old_eph = os.path.join(source_dir, 'disk.eph0')
        if flavor.ephemeral_gb and os.path.exists(old_eph):
            shutil.copy2(old_eph, os.path.join(inst_dir, 'disk.eph0'))
            grow(os.path.join(inst_dir, 'disk.eph0'), flavor.ephemeral_gb)
        elif flavor.ephemeral_gb:
            self.storage.create_ephemeral(inst_dir, flavor.ephemeral_gb)
        if flavor.swap:
            # Swap holds nothing to keep: a fresh one of the new size.
            self.storage.create_swap(inst_dir, flavor.swap)

    def start_or_define(self, context, instance, network_info, power_on):
        xml = self.lifecycle.domain_xml(
            context, instance, instance.image_meta,
            self.storage.files_of(instance), network_info)
        if power_on:
            self.lifecycle.start_with_network(instance, xml, network_info)
        else:
            self.lifecycle.host.write_instance_config(xml)

    # -- revert (source) ------------------------------------------------

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        """The kept files become the instance's again and the domain is
        rendered from the instance as Nova restored it."""
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
        self.lifecycle.network.unplug_all(instance, network_info)
        inst_dir = self.storage.instance_dir(instance)
        if os.path.exists(self.resize_dir(instance)):
            shutil.rmtree(inst_dir, ignore_errors=True)
            os.rename(self.resize_dir(instance), inst_dir)
        self.start_or_define(context, instance, network_info, power_on)
        LOG.info('Move reverted', instance=instance)


def check_no_shrink(old, new):
    """Disks only grow (as with Nova's libvirt driver)."""
    for what, before, after in (('root', old.root_gb, new.root_gb),
                                ('ephemeral', old.ephemeral_gb,
                                 new.ephemeral_gb)):
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
