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

"""The files behind a guest: image cache, per-instance disks, config drive.

Layout, the same as Nova's libvirt driver so operators find their way::

    <instances_path>/<image_cache.subdirectory_name>/<sha1(image id)>  base
    <instances_path>/<instance uuid>/disk          qcow2 overlay on the base
    <instances_path>/<instance uuid>/kernel|ramdisk direct kernel boot
    <instances_path>/<instance uuid>/disk.eph0     ephemeral disk (overlay)
    <instances_path>/<instance uuid>/disk.swap     swap disk (overlay)
    <instances_path>/<instance uuid>/disk.config   config drive
    <instances_path>/<instance uuid>/disk.rescue   rescue guest's root disk
    <instances_path>/<instance uuid>/disk.config.rescue  ... config drive
    <instances_path>/<instance uuid>/console.log   serial console (virtlogd)

Only UUIDs and hashes name files: no user-controlled string ever chooses a
path. Images go through :func:`nova.virt.images.fetch_to_raw`, which runs
Nova's format inspector and refuses backing files, data files and images
whose content does not match their declared format.
"""

import hashlib
import os
import re
import shutil
import tempfile

from nova.api.metadata import base as instance_metadata
from nova import exception as nova_exception
from nova.virt import configdrive
from nova.virt import images
import nova.privsep.fs
from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import fileutils
from oslo_utils import units
from oslo_utils import uuidutils

from nova_kvmx import exception
from nova_kvmx.guest import spec

LOG = logging.getLogger(__name__)

# Directories are traversable but not listable by others: QEMU runs as its
# own user and must reach the files libvirt hands it.
DIR_MODE = 0o711
# Guest data (disks, config drive with its passwords and user data, cached
# images) is root's: libvirt gives each file to QEMU's user while the guest
# runs (dynamic_ownership) and takes it back when it stops.
FILE_MODE = 0o600
# The label of ephemeral disks' filesystem (as Nova's libvirt driver).
EPHEMERAL_LABEL = 'ephemeral0'
# The filesystem of an ephemeral disk when [DEFAULT]
# default_ephemeral_format is unset: by the instance's os_type, else vfat,
# as Nova's mkfs (nova.privsep.fs.configurable_mkfs) chooses it.
EPHEMERAL_FS_BY_OS_TYPE = {'linux': nova.privsep.fs.FS_FORMAT_EXT4,
                           'windows': nova.privsep.fs.FS_FORMAT_NTFS}
# Cached blank disks are named <filesystem>_<MiB> (blank_disk).
_BLANK_NAME = re.compile(r'([a-z0-9]+)_(\d+)')
# A rescue guest's own files (Nova's libvirt driver's names).
RESCUE_FILES = ('disk.rescue', 'disk.config.rescue')


class InstanceStorage(object):
    def __init__(self, instances_path, cache_subdir, ephemeral_format=None):
        self.instances_path = instances_path
        self.cache_dir = os.path.join(instances_path, cache_subdir)
        self.ephemeral_format = ephemeral_format

    def instance_dir(self, instance):
        if not uuidutils.is_uuid_like(instance.uuid):
            raise nova_exception.InvalidUUID(uuid=instance.uuid)
        return os.path.join(self.instances_path, instance.uuid)

    def console_log(self, instance):
        return os.path.join(self.instance_dir(instance), 'console.log')

    def prepare(self, context, instance, image_meta, injected_files=None,
                admin_password=None, network_info=None):
        """Create every file the guest needs; on any failure remove them all.

        :returns: spec.GuestFiles
        """
        inst_dir = self.instance_dir(instance)
        if os.path.exists(inst_dir):
            raise nova_exception.InstanceExists(name=instance.name)
        # Private while the files are written (tools create them with the
        # umask's mode), traversable once they are root's alone.
        os.makedirs(inst_dir, mode=0o700)
        try:
            files = self._create_files(
                context, instance, image_meta, inst_dir,
                injected_files, admin_password, network_info)
            seal(inst_dir)
            return files
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('Removing %s after a failed spawn', inst_dir,
                            instance=instance)
                shutil.rmtree(inst_dir, ignore_errors=True)

    def files_of(self, instance):
        """The GuestFiles of an instance whose files already exist."""
        inst_dir = self.instance_dir(instance)

        def existing(name):
            path = os.path.join(inst_dir, name)
            return path if os.path.exists(path) else None

        return spec.GuestFiles(
            root_disk=os.path.join(inst_dir, 'disk'),
            console_log=os.path.join(inst_dir, 'console.log'),
            kernel=existing('kernel'),
            ramdisk=existing('ramdisk'),
            config_drive=existing('disk.config'),
            ephemeral=existing('disk.eph0'),
            swap=existing('disk.swap'))

    def exists(self, instance):
        return os.path.exists(self.instance_dir(instance))

    def destroy(self, instance):
        """Remove the instance directory; True if it is gone."""
        inst_dir = self.instance_dir(instance)
        shutil.rmtree(inst_dir, ignore_errors=True)
        return not os.path.exists(inst_dir)

    # A file made in this host's instances directory is seen by another
    # host if and only if that directory is shared with it (Nova's
    # shared-storage checks for moves and evacuations).

    def make_probe(self):
        name = 'kvmx-shared-check-' + uuidutils.generate_uuid()
        private_file(os.path.join(self.instances_path, name))
        return name

    def sees_probe(self, name):
        # A directory's mtime update makes NFS clients drop cached lookups.
        os.utime(self.instances_path)
        return os.path.exists(os.path.join(self.instances_path,
                                           os.path.basename(name)))

    def remove_probe(self, name):
        fileutils.delete_if_exists(
            os.path.join(self.instances_path, os.path.basename(name)))

    def _create_files(self, context, instance, image_meta, inst_dir,
                      injected_files, admin_password, network_info):
        base = self.cached_image(context, image_meta.id)
        root_disk = os.path.join(inst_dir, 'disk')
        create_overlay(base, root_disk, instance.flavor.root_gb)
        kernel = ramdisk = config_drive = ephemeral = swap = None
        flavor = instance.flavor
        if flavor.ephemeral_gb:
            ephemeral = self.create_ephemeral(inst_dir, flavor.ephemeral_gb,
                                              instance.get('os_type'))
        if flavor.swap:
            swap = self.create_swap(inst_dir, flavor.swap)
        if instance.kernel_id:
            # QEMU loads kernel and initrd as files (-kernel/-initrd), never
            # as a disk, so they are not subject to disk format inspection
            # (a bzImage even looks like an MBR); Nova does the same.
            kernel = os.path.join(inst_dir, 'kernel')
            fetch(images.fetch, context, instance.kernel_id, kernel)
            if instance.ramdisk_id:
                ramdisk = os.path.join(inst_dir, 'ramdisk')
                fetch(images.fetch, context, instance.ramdisk_id, ramdisk)
        if configdrive.required_by(instance):
            config_drive = os.path.join(inst_dir, 'disk.config')
            make_config_drive(context, instance, config_drive,
                              injected_files, admin_password, network_info)
        return spec.GuestFiles(
            root_disk=root_disk,
            console_log=os.path.join(inst_dir, 'console.log'),
            kernel=kernel, ramdisk=ramdisk, config_drive=config_drive,
            ephemeral=ephemeral, swap=swap)

    def rescue_files(self, context, instance, image_meta, network_info=None,
                     rescue_password=None):
        """The files of a rescue guest: a fresh overlay of the rescue image
        (``disk.rescue``), the instance's root disk attached second, its
        kernel, ramdisk and console log and, when it has a config drive, a
        new one (``disk.config.rescue``) with the rescue password as its
        admin password, as Nova's libvirt driver makes them."""
        own = self.files_of(instance)
        inst_dir = self.instance_dir(instance)
        rescue_disk = os.path.join(inst_dir, RESCUE_FILES[0])
        config_drive = None
        with fileutils.remove_path_on_error(rescue_disk):
            create_overlay(self.cached_image(context, image_meta.id),
                           rescue_disk, 0)
            if configdrive.required_by(instance):
                config_drive = os.path.join(inst_dir, RESCUE_FILES[1])
                with fileutils.remove_path_on_error(config_drive):
                    make_config_drive(context, instance, config_drive, None,
                                      rescue_password, network_info)
        return spec.GuestFiles(
            root_disk=rescue_disk, console_log=own.console_log,
            kernel=own.kernel, ramdisk=own.ramdisk,
            config_drive=config_drive, rescued_root=own.root_disk)

    def remove_rescue_files(self, instance):
        for name in RESCUE_FILES:
            fileutils.delete_if_exists(
                os.path.join(self.instance_dir(instance), name))

    def ephemeral_fs(self, os_type):
        """``[DEFAULT] default_ephemeral_format``, else Nova's choice for
        the instance's ``os_type``."""
        return self.ephemeral_format or EPHEMERAL_FS_BY_OS_TYPE.get(
            os_type, nova.privsep.fs.FS_FORMAT_VFAT)

    def create_ephemeral(self, inst_dir, size_gb, os_type=None):
        path = os.path.join(inst_dir, 'disk.eph0')
        create_overlay(self.blank_disk(
            self.ephemeral_fs(os_type), size_gb * units.Gi,
            EPHEMERAL_LABEL), path, size_gb)
        return path

    def create_swap(self, inst_dir, size_mb):
        path = os.path.join(inst_dir, 'disk.swap')
        create_overlay(self.blank_disk('swap', size_mb * units.Mi), path, 0)
        return path

    def base_for(self, context, instance, backing_file):
        """This host's cached base of the name of ``backing_file`` (the
        base of an overlay made on another host): the instance's image,
        fetched if missing, or a blank disk, made if missing; None for
        any other base."""
        name = os.path.basename(backing_file)
        if name == cache_name(instance.image_ref):
            return self.cached_image(context, instance.image_ref)
        blank = _BLANK_NAME.fullmatch(name)
        if blank:
            fs = blank.group(1)
            return self.blank_disk(
                fs, int(blank.group(2)) * units.Mi,
                None if fs == 'swap' else EPHEMERAL_LABEL)
        return None

    def blank_disk(self, fs, size, label=None):
        """Path of a cached raw disk of ``size`` bytes formatted with
        ``fs`` ('swap' for mkswap); guests get overlays on it, as with
        Nova's libvirt driver, so formatting happens once per size."""
        name = '%s_%d' % (fs, size // units.Mi)
        path = os.path.join(self.cache_dir, name)
        with lockutils.lock('kvmx-image-cache-' + name):
            if not os.path.exists(path):
                os.makedirs(self.cache_dir, mode=DIR_MODE, exist_ok=True)
                staged = path + '.part'
                with fileutils.remove_path_on_error(staged):
                    with open(os.open(staged, os.O_CREAT | os.O_WRONLY,
                                      FILE_MODE), 'wb') as f:
                        f.truncate(size)
                    nova.privsep.fs.unprivileged_mkfs(fs, staged, label)
                    os.rename(staged, path)
        return path

    def cached_image(self, context, image_id):
        """Path of the raw base image of ``image_id``, fetched once.

        Concurrent spawns of one image wait for the first download.
        """
        name = cache_name(image_id)
        path = os.path.join(self.cache_dir, name)
        with lockutils.lock('kvmx-image-cache-' + name):
            if not os.path.exists(path):
                os.makedirs(self.cache_dir, mode=DIR_MODE, exist_ok=True)
                LOG.info('Fetching image %s into the image cache', image_id)
                # Downloaded and converted in a private directory: the
                # cache is traversable and its names are predictable.
                staging = tempfile.mkdtemp(prefix='.fetch-',
                                           dir=self.cache_dir)
                try:
                    staged = os.path.join(staging, name)
                    fetch(images.fetch_to_raw, context, image_id, staged)
                    os.chmod(staged, FILE_MODE)
                    os.rename(staged, path)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        return path


def private_file(path):
    """Create ``path`` empty (or empty it) with mode 0600, for a tool to
    write into: qemu-img and genisoimage keep an existing file's mode, but
    create a new one by the umask (0644 by default), which would leave
    what they write readable by every local user."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC |
                 os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def seal(inst_dir):
    """Make an instance directory's files root's alone, the directory
    traversable (QEMU's user reaches the files libvirt hands it)."""
    for name in os.listdir(inst_dir):
        os.chmod(os.path.join(inst_dir, name), FILE_MODE)
    os.chmod(inst_dir, DIR_MODE)


def cache_name(image_id):
    """The image cache's file name for an image."""
    return hashlib.sha1(image_id.encode()).hexdigest()


def fetch(fetch_func, context, image_id, path):
    """Run one of nova.virt.images' fetch functions; failures that are not
    already Nova's (a broken download stream, a full disk) become an
    ImageFetchFailed naming the image."""
    try:
        fetch_func(context, image_id, path)
    except nova_exception.NovaException:
        raise
    except Exception as ex:
        raise exception.ImageFetchFailed(
            image_id=image_id, reason=str(ex) or type(ex).__name__) from ex


def create_overlay(base, path, root_gb):
    """A qcow2 overlay on ``base``, grown to the flavor's root disk size.

    A flavor root disk smaller than the image is refused (root_gb=0 means
    "the image's size", as in Nova).
    """
    virtual_size = images.qemu_img_info(base, format='raw').virtual_size
    args = ['qemu-img', 'create', '-f', 'qcow2', '-F', 'raw', '-b', base,
            path]
    if root_gb:
        wanted = root_gb * units.Gi
        if wanted < virtual_size:
            raise nova_exception.FlavorDiskSmallerThanImage(
                flavor_size=wanted, image_size=virtual_size)
        args.append(str(wanted))
    private_file(path)
    processutils.execute(*args)


def make_config_drive(context, instance, path, injected_files,
                      admin_password, network_info):
    extra_md = {}
    if admin_password:
        extra_md['admin_pass'] = admin_password
    inst_md = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    LOG.info('Creating config drive at %s', path, instance=instance)
    private_file(path)
    with configdrive.ConfigDriveBuilder(instance_md=inst_md) as builder:
        builder.make_drive(path)


def supports_direct_io(directory):
    """Whether files in ``directory`` can be opened with O_DIRECT, which
    ``cache='none'`` needs (tmpfs, for one, cannot)."""
    probe = os.path.join(directory, '.kvmx-directio-probe')
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
