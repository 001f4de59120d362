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
"""

import os

from nova.virt.libvirt import imagecache
from oslo_log import log as logging

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


def manager():
    """Nova's libvirt image cache manager (reads CONF.instances_path and
    [image_cache])."""
    return imagecache.ImageCacheManager()


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
