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

"""The image cache's upkeep: aging unused bases out of ``_base`` and
pre-caching images for an aggregate.

Our ``_base`` has the layout of Nova's libvirt driver (a base named by
the SHA-1 of its image id, ``swap_<MiB>`` blank swap disks, overlays in
``<instances_path>/<uuid>/disk``), so Nova's own ImageCacheManager keeps
it: every ``[image_cache] manager_interval`` nova-compute hands it the
host's instances; bases they use (by image, kernel and ramdisk id, or as
the backing file of their disk) are touched, the others are removed
once older than ``[image_cache] remove_unused_original_minimum_age_seconds``
(``remove_unused_base_images``). The removal takes the lock the cache
fills a base under, so a base being fetched is never removed.

One difference: a running guest's disk is private (0600) and libvirt
gives it to QEMU's user while the guest runs, so nova-compute's own user
cannot open it to read its backing file, as Nova's manager does (Nova's
driver creates disks by umask, readable by all). Its backing file is
then read from the backing chain libvirt holds for the running domain.
"""

import os

import libvirt
import nova.conf
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import imagecache
from nova.virt.libvirt import utils as libvirt_utils
from oslo_concurrency import processutils
from oslo_log import log as logging

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

# Nova's ImageCacheManager removes a base under the external lock
# "nova-<base name>" in <instances_path>/locks; the cache fills one under
# the same lock.
LOCK_PREFIX = 'nova-'
LOCK_SUBDIR = 'locks'


def lock_path(instances_path):
    """The lock directory, private (0700): the names of its lock files
    are those of the cached images, which oslo.concurrency creates by
    umask, as it would the directory itself."""
    path = os.path.join(instances_path, LOCK_SUBDIR)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return path


class ImageCacheManager(imagecache.ImageCacheManager):
    """Nova's libvirt image cache manager (reads CONF.instances_path and
    [image_cache]), reading the backing file of a running guest's disk
    from libvirt (``host``, Nova's libvirt Host)."""

    def __init__(self, host):
        super().__init__()
        self._host = host

    def _list_backing_images(self):
        """Nova's method, with the backing file from ``_backing_file``:
        the bases the root disks of this host's instances are overlays
        of."""
        base_dir = os.path.join(CONF.instances_path,
                                CONF.image_cache.subdirectory_name)
        in_use = []
        for name in sorted(os.listdir(CONF.instances_path)):
            disk_path = os.path.join(CONF.instances_path, name, 'disk')
            if name not in self.instance_names or not os.path.exists(
                    disk_path):
                continue
            backing_file = self._backing_file(name, disk_path)
            if not backing_file:
                continue
            backing_path = os.path.join(base_dir, backing_file)
            if backing_path not in in_use:
                in_use.append(backing_path)
            if backing_path in self.unexplained_images:
                LOG.warning('Instance %(instance)s is using a backing file '
                            '%(backing)s which does not appear in the '
                            'image service',
                            {'instance': name, 'backing': backing_file})
                self.unexplained_images.remove(backing_path)
        return in_use

    def _backing_file(self, name, disk_path):
        """The base name of ``disk_path``'s backing file, or None: from
        the running domain's backing chain, else from the file itself
        (then nova-compute's user's)."""
        try:
            domain = self._host.get_connection().lookupByUUIDString(name)
            guest = libvirt_guest.Guest(domain) if domain.isActive() \
                else None
        except libvirt.libvirtError:
            guest = None   # no domain (a resize's "<uuid>_resize", gone)
        held = running_bases(guest) if guest is not None else {}
        if disk_path in held:
            backing = held[disk_path]
            return os.path.basename(backing) if backing else None
        try:
            return libvirt_utils.get_disk_backing_file(disk_path)
        except processutils.ProcessExecutionError:
            if not os.path.exists(disk_path):
                return None   # deleted meanwhile (Nova's bug 1261442)
            raise


def running_bases(guest):
    """{disk path: its backing file, or None} of a running guest's file
    disks, as libvirt reports them."""
    return {disk.source_path: (disk.backing_store.source_file or None
                               if disk.backing_store is not None else None)
            for disk in guest.get_all_disks() if disk.source_path}


def manager(host):
    """The image cache manager of the host ``host`` (Nova's libvirt Host)
    """
    return ImageCacheManager(host)


def precache(storage, context, image_id):
    """``cache_image`` (``POST /os-aggregates/{id}/images``): fetch an
    image into the cache ahead of the first boot; True if it was fetched,
    False if it was there (then touched, so the manager keeps it as long
    as after a boot), as Nova's libvirt driver. The bases are
    nova-compute's user's (never relabelled): no privilege touches
    them."""
    path = os.path.join(storage.cache_dir, imagecache.get_cache_fname(
        image_id))
    if os.path.exists(path):
        LOG.info('Image %s already cached; updating timestamp', image_id)
        os.utime(path)
        return False
    LOG.info('Caching image %s by request', image_id)
    storage.cached_image(context, image_id)
    return True
