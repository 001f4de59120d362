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

"""The files and disks behind a guest: image cache, per-instance disks,
config drive.

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

With ``[libvirt] images_type = rbd`` the root, ephemeral and swap disks
are RBD images instead (:mod:`nova_kvmx.storage.rbd`); the rest stays in
the instance directory.

Only UUIDs and hashes name files: no user-controlled string ever chooses a
path. Images go through :mod:`nova_kvmx.storage.base_image`, which runs
Nova's format inspector, refuses backing files, data files and images
whose content does not match their declared format, and bounds an image's
virtual size before it is converted.

``[DEFAULT] use_cow_images = False`` (with ``[libvirt] images_type =
default``) makes each instance disk a full copy of its base instead of an
overlay: a qcow2 file with no backing file (:func:`create_copy`), so
nothing of the guest depends on the image cache.

``[DEFAULT] force_raw_images = False`` keeps a base in the image's own
format (the overlays name it as their backing format);
``[DEFAULT] preallocate_images = space`` allocates each disk's full size
on the host's filesystem when it is made (``fallocate``), as Nova's
libvirt driver does.
"""

import dataclasses
import grp
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
import nova.privsep.path
from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import fileutils
from oslo_utils import units
from oslo_utils import uuidutils

from nova_kvmx import exception
from nova_kvmx.guest import spec
from nova_kvmx.storage import base_image
from nova_kvmx.storage import image_cache
from nova_kvmx.storage import rbd

LOG = logging.getLogger(__name__)

# Directories are traversable but not listable by others: QEMU runs as its
# own user and must reach the files libvirt hands it.
DIR_MODE = 0o711
# Guest data (disks, config drive with its passwords and user data) is
# nova-compute's user's alone: libvirt gives each file to QEMU's user while
# the guest runs (dynamic_ownership) and takes it back when it stops.
FILE_MODE = 0o600
# A base in the image cache is shared by guests, and libvirt never gives
# a backing file back: it stays nova-compute's user's, and QEMU reads it
# through [kvmx] image_cache_group (the domain says not to relabel it).
BASE_MODE = 0o640
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
    def __init__(self, instances_path, cache_subdir, ephemeral_format=None,
                 rbd=None, max_image_gb=0, force_raw=True,
                 preallocate=False, use_cow=True, cache_group='kvm'):
        """:param ephemeral_format: ``[DEFAULT] default_ephemeral_format``
            (None: Nova's choice for the instance's ``os_type``)
        :param rbd: the storage.rbd.RBDDisks keeping root, ephemeral
            and swap disks ([libvirt] images_type = rbd), None for qcow2
            overlays in the instance directory
        :param max_image_gb: ``[kvmx] max_image_virtual_size_gb``, the
            bound of images no flavor root disk bounds (0: none)
        :param force_raw: ``[DEFAULT] force_raw_images``
        :param preallocate: ``[DEFAULT] preallocate_images = space``
        :param use_cow: False for disks that are full copies of their base
            (``[DEFAULT] use_cow_images = False``), not overlays on it
        :param cache_group: ``[kvmx] image_cache_group``
        """
        self.instances_path = instances_path
        self.cache_dir = os.path.join(instances_path, cache_subdir)
        self.ephemeral_format = ephemeral_format
        self.rbd = rbd
        self.max_image_gb = max_image_gb
        self.force_raw = force_raw
        self.preallocate = preallocate
        self.use_cow = use_cow
        self.cache_group = cache_group

    def check_host(self):
        """:raises: HostNotSupported when ``preallocate_images = space``
            cannot be done in the instances directory, or the image
            cache's group is not one of this process's"""
        gid = self.cache_gid()
        if os.geteuid() != 0 and gid not in os.getgroups() + [
                os.getegid()]:
            raise exception.HostNotSupported(
                reason='[kvmx] image_cache_group %s: nova-compute\'s user '
                       'is not in this group, and cannot give it the '
                       'image cache\'s bases' % self.cache_group)
        if self.preallocate and not supports_fallocate(self.instances_path):
            raise exception.HostNotSupported(
                reason='[DEFAULT] preallocate_images = space, but the '
                       'filesystem of [DEFAULT] instances_path %s cannot '
                       'preallocate files (fallocate)' % self.instances_path)

    def cache_gid(self):
        """:raises: HostNotSupported when the group does not exist"""
        try:
            return grp.getgrnam(self.cache_group).gr_gid
        except KeyError:
            raise exception.HostNotSupported(
                reason='[kvmx] image_cache_group %s: no such group' %
                       self.cache_group)

    def share_base(self, path):
        """The base at ``path`` readable by QEMU through the image
        cache's group (BASE_MODE), as every base the cache holds."""
        info = os.stat(path)
        gid = self.cache_gid()
        if info.st_gid != gid:
            os.chown(path, -1, gid)
        if info.st_mode & 0o777 != BASE_MODE:
            os.chmod(path, BASE_MODE)

    def with_bases(self, files, guest=None):
        """``files`` with the bases of its local overlays (GuestFiles
        .bases), read from each overlay; the running ``guest``'s disks
        from libvirt instead (QEMU holds them)."""
        held = image_cache.running_bases(guest) if guest is not None else {}
        paths = [files.root_disk, files.rescued_root, files.ephemeral,
                 files.swap, files.rescue.path if files.rescue else None]
        bases = []
        for path in paths:
            if not isinstance(path, str) or not os.path.exists(path):
                continue
            backing = held.get(path) or images.qemu_img_info(
                path, format='qcow2').backing_file
            if backing and os.path.dirname(backing) == self.cache_dir:
                bases.append((path, spec.BaseImage(backing,
                                                   base_format(backing))))
        return dataclasses.replace(files, bases=tuple(bases))

    def size_limit(self, root_gb=0):
        """The bound of an image's virtual size for a root disk of
        ``root_gb`` (0: an image no root disk bounds)."""
        return base_image.size_limit(root_gb, self.max_image_gb)

    @property
    def shared_disks(self):
        """Whether the disks are on storage every host reaches (RBD)."""
        return self.rbd is not None

    def instance_dir(self, instance):
        if not uuidutils.is_uuid_like(instance.uuid):
            raise nova_exception.InvalidUUID(uuid=instance.uuid)
        return os.path.join(self.instances_path, instance.uuid)

    def console_log(self, instance):
        return os.path.join(self.instance_dir(instance), 'console.log')

    def prepare(self, context, instance, image_meta, injected_files=None,
                admin_password=None, network_info=None, volume_backed=False,
                disks=True, config_drive=True):
        """Create every file and disk the guest needs; on any failure
        remove them all.

        :param volume_backed: the root disk is a volume (no local one)
        :param disks: False to make no disk (they exist already, on RBD,
            for a live migration's destination)
        :param config_drive: False to leave the config drive to
            make_config_drive once the domain is defined (its device
            metadata needs the addresses libvirt gives the devices); the
            files returned name it all the same
        :returns: spec.GuestFiles
        """
        inst_dir = self.instance_dir(instance)
        if os.path.exists(inst_dir):
            raise nova_exception.InstanceExists(name=instance.name)
        if self.rbd is not None and disks:
            self.rbd.check_absent(instance)
        # Private while the files are written (tools create them with the
        # umask's mode), traversable once they are nova-compute's alone.
        os.makedirs(inst_dir, mode=0o700)
        try:
            self._create_files(
                context, instance, image_meta, inst_dir, injected_files,
                admin_password, network_info, volume_backed, disks,
                config_drive)
            seal(inst_dir)
            files = self.files_of(instance, volume_backed)
            return dataclasses.replace(
                files, config_drive=self.config_drive_path(instance))
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('Removing %s after a failed spawn', inst_dir,
                            instance=instance)
                self.discard(instance, shared_disks=disks)

    def discard(self, instance, shared_disks=True):
        """destroy() after a failure, which stays the error to report: a
        failure to remove is only logged."""
        try:
            self.destroy(instance, shared_disks)
        except Exception:
            LOG.exception('Could not remove the disks of the failed guest',
                          instance=instance)
            shutil.rmtree(self.instance_dir(instance), ignore_errors=True)

    def files_of(self, instance, volume_backed=False):
        """The GuestFiles of an instance whose files already exist (no
        root disk for a volume-backed one)."""
        inst_dir = self.instance_dir(instance)

        def existing(name):
            path = os.path.join(inst_dir, name)
            return path if os.path.exists(path) else None

        root_disk = None if volume_backed else os.path.join(inst_dir, 'disk')
        ephemeral, swap = existing('disk.eph0'), existing('disk.swap')
        if self.rbd is not None:
            on_rbd = self.rbd.disks_of(instance)
            monitors = self.rbd.monitors()

            def image(name):
                return self.rbd.source(instance, name, monitors) \
                    if name in on_rbd else None

            root_disk = None if volume_backed else self.rbd.source(
                instance, rbd.ROOT, monitors)
            ephemeral, swap = image(rbd.EPHEMERAL), image(rbd.SWAP)
        return spec.GuestFiles(
            root_disk=root_disk,
            console_log=os.path.join(inst_dir, 'console.log'),
            kernel=existing('kernel'),
            ramdisk=existing('ramdisk'),
            config_drive=existing('disk.config'),
            ephemeral=ephemeral,
            swap=swap)

    def exists(self, instance):
        return os.path.exists(self.instance_dir(instance))

    def config_drive_path(self, instance):
        """Where the instance's config drive is, or is to be; None when
        it has none."""
        if not configdrive.required_by(instance):
            return None
        return os.path.join(self.instance_dir(instance), 'disk.config')

    def make_config_drive(self, context, instance, injected_files=None,
                          admin_password=None, network_info=None):
        """Create the instance's config drive, unless it has none or it
        exists (an evacuated instance's in a shared instances path), as
        Nova's libvirt driver leaves an existing one alone."""
        path = self.config_drive_path(instance)
        if path is None or os.path.exists(path):
            return
        with fileutils.remove_path_on_error(path):
            make_config_drive(context, instance, path, injected_files,
                              admin_password, network_info)

    def destroy(self, instance, shared_disks=True):
        """Remove the instance directory, and with ``shared_disks`` its
        RBD disks; True if the directory is gone.

        :raises: RBDStorageError when the RBD disks cannot be removed
            (the directory is kept then)
        """
        if self.rbd is not None and shared_disks:
            self.rbd.remove(instance)
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
                      injected_files, admin_password, network_info,
                      volume_backed=False, disks=True, config_drive=True):
        flavor = instance.flavor
        if disks and not volume_backed:
            self.create_root(context, instance, image_meta.id)
        if disks and flavor.ephemeral_gb:
            self.create_ephemeral(instance, flavor.ephemeral_gb,
                                  instance.get('os_type', None))
        if disks and flavor.swap:
            self.create_swap(instance, flavor.swap)
        if instance.kernel_id:
            # QEMU loads kernel and initrd as files (-kernel/-initrd), never
            # as a disk, so they are not subject to disk format inspection
            # (a bzImage even looks like an MBR); Nova does the same.
            base_image.fetch_file(context, instance.kernel_id,
                                  os.path.join(inst_dir, 'kernel'),
                                  self.size_limit(), instance.trusted_certs)
            if instance.ramdisk_id:
                base_image.fetch_file(context, instance.ramdisk_id,
                                      os.path.join(inst_dir, 'ramdisk'),
                                      self.size_limit(),
                                      instance.trusted_certs)
        if config_drive and configdrive.required_by(instance):
            make_config_drive(context, instance,
                              os.path.join(inst_dir, 'disk.config'),
                              injected_files, admin_password, network_info)

    def create_root(self, context, instance, image_id):
        """The root disk of the flavor's size: an overlay on the cached
        image, or on RBD a clone of the image (else the image imported)."""
        root_gb = instance.flavor.root_gb
        limit = self.size_limit(root_gb)
        if self.rbd is not None:
            self.rbd.create_root(
                context, instance, image_id, root_gb * units.Gi,
                lambda: self.cached_image(context, image_id, limit,
                                          instance.trusted_certs))
            return
        self.overlay_on_image(
            self.cached_image(context, image_id, limit,
                              instance.trusted_certs),
            os.path.join(self.instance_dir(instance), 'disk'), root_gb)

    def overlay_on_image(self, base, path, root_gb):
        """A disk (create_overlay, or create_copy without copy-on-write)
        of a cached image, in the format the base really has."""
        self.disk_from_base(base, path, root_gb)
        if root_gb:
            self.allocate(path, root_gb * units.Gi)

    def disk_from_base(self, base, path, size_gb):
        """A qcow2 disk of ``base`` at ``path``: an overlay on it, or
        with ``use_cow_images = False`` a copy of it."""
        make = create_overlay if self.use_cow else create_copy
        make(base, path, size_gb, base_format(base))

    def allocate(self, path, size):
        """``[DEFAULT] preallocate_images = space``: reserve ``size``
        bytes for the disk at ``path`` on the host's filesystem, as Nova's
        libvirt driver does (fallocate, keeping the file's size)."""
        if self.preallocate:
            processutils.execute('fallocate', '-n', '-l', str(size), path)

    def rescue_files(self, context, instance, image_meta,
                     volume_backed=False, stable=None, network_info=None,
                     rescue_password=None, image_id=None):
        """The files of a rescue guest: a fresh overlay of the rescue image
        (``disk.rescue``), the instance's files and, when it has a config
        drive, a new one (``disk.config.rescue``) with the rescue password
        as its admin password, as Nova's libvirt driver makes them.

        :param stable: the spec.RescueDisk of a stable device rescue (every
            disk of the instance where it is, the rescue disk last), None
            for the legacy layout: the rescue disk first, the instance's
            root disk second, its kernel, ramdisk and console log
        :param image_id: the rescue image (default: ``image_meta``'s)
        """
        own = self.files_of(instance, volume_backed)
        inst_dir = self.instance_dir(instance)
        rescue_disk = os.path.join(inst_dir, RESCUE_FILES[0])
        config_drive = None
        with fileutils.remove_path_on_error(rescue_disk):
            self.overlay_on_image(
                self.cached_image(context, image_id or image_meta.id,
                                  self.size_limit(), instance.trusted_certs),
                rescue_disk, 0)
            if configdrive.required_by(instance):
                config_drive = os.path.join(inst_dir, RESCUE_FILES[1])
                with fileutils.remove_path_on_error(config_drive):
                    make_config_drive(context, instance, config_drive, None,
                                      rescue_password, network_info)
        if stable is not None:
            return dataclasses.replace(
                own, config_drive=config_drive,
                rescue=dataclasses.replace(stable, path=rescue_disk))
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

    def create_ephemeral(self, instance, size_gb, os_type=None):
        base = self.blank_disk(self.ephemeral_fs(os_type),
                               size_gb * units.Gi, EPHEMERAL_LABEL)
        if self.rbd is not None:
            self.rbd.import_blank(instance, rbd.EPHEMERAL, base)
            return
        path = os.path.join(self.instance_dir(instance), 'disk.eph0')
        self.disk_from_base(base, path, size_gb)
        self.allocate(path, size_gb * units.Gi)

    def create_swap(self, instance, size_mb):
        base = self.blank_disk('swap', size_mb * units.Mi)
        if self.rbd is not None:
            self.rbd.import_blank(instance, rbd.SWAP, base)
            return
        path = os.path.join(self.instance_dir(instance), 'disk.swap')
        self.disk_from_base(base, path, 0)
        self.allocate(path, size_mb * units.Mi)

    def base_for(self, context, instance, backing_file):
        """This host's cached base of the name of ``backing_file`` (the
        base of an overlay made on another host): the instance's image,
        fetched if missing, or a blank disk, made if missing; None for
        any other base."""
        name = os.path.basename(backing_file)
        if name == cache_name(instance.image_ref):
            return self.cached_image(
                context, instance.image_ref,
                self.size_limit(instance.flavor.root_gb),
                instance.trusted_certs)
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
                    self.share_base(staged)
                    os.rename(staged, path)
            else:
                self.share_base(path)
        return path

    def cached_image(self, context, image_id, limit=None,
                     trusted_certs=None):
        """Path of the base image of ``image_id``, fetched once (raw
        unless ``force_raw_images = False``).

        Concurrent spawns of one image wait for the first download.

        :param limit: the base_image.SizeLimit the image's virtual size
            must keep to, checked before it is converted (None: unbounded,
            as for an operator's pre-caching)
        :param trusted_certs: the instance's TrustedCerts: Nova's Glance
            client verifies the image's signature and its certificate
            against them as it downloads (as for Nova's libvirt driver, a
            base already cached is not downloaded again)
        :raises: FlavorDiskSmallerThanImage, ImageTooLarge,
            ImageVerificationFailed: nothing is cached then
        """
        name = cache_name(image_id)
        path = os.path.join(self.cache_dir, name)
        # The lock Nova's image cache manager removes an unused base
        # under.
        with lockutils.lock(name, lock_file_prefix=image_cache.LOCK_PREFIX,
                            external=True, lock_path=image_cache.lock_path(
                                self.instances_path)):
            if os.path.exists(path):
                self.share_base(path)
                if limit is not None:
                    limit.check(image_id,
                                base_image.base_info(path).virtual_size)
                return path
            os.makedirs(self.cache_dir, mode=DIR_MODE, exist_ok=True)
            LOG.info('Fetching image %s into the image cache', image_id)
            # Downloaded and converted in a private directory: the cache
            # is traversable and its names are predictable.
            staging = tempfile.mkdtemp(prefix='.fetch-', dir=self.cache_dir)
            try:
                staged = os.path.join(staging, name)
                base_image.fetch_base(context, image_id, staged, limit,
                                      self.force_raw, trusted_certs)
                self.share_base(staged)
                os.rename(staged, path)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return path


def reclaim(path):
    """Own the file at ``path`` again. libvirt gives a stopped guest's
    writable disks back, never a read-only one (the config drive: other
    guests might share it) nor a block copy's target: those stay QEMU's
    user's (0600) until nova-compute takes them back through Nova's
    privsep to read them."""
    if os.stat(path).st_uid != os.geteuid():
        nova.privsep.path.chown(path, uid=os.geteuid())


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


def local_disks(files):
    """The paths of the instance's own writable disks that are files in
    its directory (not RBD images)."""
    return [path for path in (files.root_disk, files.ephemeral, files.swap)
            if isinstance(path, str)]


def seal(inst_dir):
    """Make an instance directory's files its owner's alone, the directory
    traversable (QEMU's user reaches the files libvirt hands it)."""
    for name in os.listdir(inst_dir):
        os.chmod(os.path.join(inst_dir, name), FILE_MODE)
    os.chmod(inst_dir, DIR_MODE)


def base_format(base):
    """The format of a base in the image cache: raw for the blank disks
    made here, the format a cached image really has (checked again)."""
    if _BLANK_NAME.fullmatch(os.path.basename(base)):
        return 'raw'
    return base_image.base_info(base).file_format


def cache_name(image_id):
    """The image cache's file name for an image."""
    return hashlib.sha1(image_id.encode()).hexdigest()


def create_overlay(base, path, root_gb, base_format='raw'):
    """A qcow2 overlay on ``base`` (a file of ``base_format``), grown to
    the flavor's root disk size.

    A flavor root disk smaller than the image is refused (root_gb=0 means
    "the image's size", as in Nova).
    """
    virtual_size = images.qemu_img_info(base,
                                        format=base_format).virtual_size
    args = ['qemu-img', 'create', '-f', 'qcow2', '-F', base_format, '-b',
            base, path]
    if root_gb:
        limit = base_image.size_limit(root_gb, 0)
        limit.check(os.path.basename(base), virtual_size)
        args.append(str(limit.size))
    private_file(path)
    processutils.execute(*args)


def create_copy(base, path, root_gb, base_format='raw'):
    """A qcow2 disk holding all of ``base`` (no backing file), grown to
    the flavor's root disk size: a disk of ``[DEFAULT] use_cow_images =
    False``, as Nova's Flat image backend copies the base. The same
    bound as :func:`create_overlay`."""
    virtual_size = images.qemu_img_info(base,
                                        format=base_format).virtual_size
    if root_gb:
        limit = base_image.size_limit(root_gb, 0)
        limit.check(os.path.basename(base), virtual_size)
    private_file(path)
    processutils.execute('qemu-img', 'convert', '-f', base_format,
                         '-O', 'qcow2', base, path)
    if root_gb and limit.size > virtual_size:
        processutils.execute('qemu-img', 'resize', '-f', 'qcow2', path,
                             str(limit.size))


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


def disk_io(preallocate, cache):
    """The I/O mode of the instance's disk files: 'native' for
    preallocated disks, as Nova's libvirt driver, where the cache mode
    lets QEMU use it (O_DIRECT); else QEMU's default."""
    if not preallocate:
        return None
    if cache in ('none', 'directsync'):
        return 'native'
    LOG.warning('[DEFAULT] preallocate_images = space: disks keep QEMU\'s '
                'threads I/O, not native, with the %s cache mode (the '
                'instances directory does not allow O_DIRECT)', cache)
    return None


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


def supports_fallocate(directory):
    """Whether files in ``directory`` can be preallocated
    (``preallocate_images = space``), as Nova's libvirt driver probes it."""
    probe = os.path.join(directory, '.kvmx-fallocate-probe')
    try:
        processutils.execute('fallocate', '-l', '1', probe)
        return True
    except (processutils.ProcessExecutionError, OSError):
        return False
    finally:
        fileutils.delete_if_exists(probe)
