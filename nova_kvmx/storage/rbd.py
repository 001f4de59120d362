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

"""Instance disks as Ceph RBD images (``[libvirt] images_type = rbd``).

As Nova's libvirt driver's ``Rbd`` image backend keeps them, with Nova's
own RBD library (:mod:`nova.storage.rbd_utils`)::

    <images_rbd_pool>/<instance uuid>_disk        root disk
    <images_rbd_pool>/<instance uuid>_disk.eph0   ephemeral disk
    <images_rbd_pool>/<instance uuid>_disk.swap   swap disk

The root disk is a copy-on-write clone of the Glance image's RBD snapshot
when Glance keeps the image, raw, in the same cluster (a location
``rbd://<fsid>/<pool>/<image>/<snapshot>`` this host can read); otherwise
the image is fetched into the image cache through Nova's format checks
and imported (refused with ``[workarounds]
never_download_image_if_on_rbd``). Ephemeral and swap disks are the
cache's formatted blank disks, imported. What is not a disk (kernel,
ramdisk, config drive, console log) stays in the instance directory.

QEMU opens the images through its own librbd, with the monitors the
cluster names (``mon dump``) and the cephx user ``[libvirt] rbd_user``,
whose key is in libvirt secret ``[libvirt] rbd_secret_uuid``; this host's
own calls (librados, the ``rbd`` command) use the same user, with the
keyring ``[libvirt] images_rbd_ceph_conf`` names. Connecting gives up
after ``[libvirt] rbd_connect_timeout`` seconds. Every failure is an
:class:`~nova_kvmx.exception.RBDStorageError` naming the cause.

The Python bindings (``rados``, ``rbd``) exist only as distribution
packages (Debian/Ubuntu: python3-rados, python3-rbd): nova-compute's
Python must see them (see the README).
"""

import contextlib
import dataclasses
import os
import uuid

from nova.image import glance
from nova import exception as nova_exception
from nova.storage import rbd_utils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import encodeutils
from oslo_utils import units

from nova_kvmx import exception
from nova_kvmx.guest import spec

LOG = logging.getLogger(__name__)

# The instance's disks, by the names Nova's libvirt driver gives them.
ROOT = 'disk'
EPHEMERAL = 'disk.eph0'
SWAP = 'disk.swap'
# The snapshot a resize keeps for its revert (Nova's name).
RESIZE_SNAPSHOT = rbd_utils.RESIZE_SNAPSHOT_NAME
# The snapshot Glance's RBD store hands out of each image.
GLANCE_SNAPSHOT = 'snap'
# The formats an RBD clone can be made of (Nova's Rbd.clone).
CLONEABLE_FORMATS = ('raw', 'iso')

IMAGE_API = glance.API()


@dataclasses.dataclass(frozen=True)
class RBDSettings:
    """Nova's ``[libvirt]`` options of the RBD image backend.

    :param cache: the cache mode of the disks (``disk_cachemodes``'
        ``network`` mode, else ``none``)
    :param never_download: ``[workarounds] never_download_image_if_on_rbd``
    """

    pool: str
    ceph_conf: str | None = None
    user: str | None = None
    secret_uuid: str | None = None
    connect_timeout: int = 5
    never_download: bool = False
    cache: str = 'none'


def settings_from_conf(conf, cache='none'):
    """The RBD settings when ``[libvirt] images_type = rbd``, None for the
    local qcow2 disks (``default`` or ``qcow2``).

    :raises: HostNotSupported naming an option this driver does not
        realise
    """
    images_type = conf.libvirt.images_type
    if images_type in ('default', 'qcow2'):
        return None
    if images_type != 'rbd':
        raise exception.HostNotSupported(
            reason='[libvirt] images_type = %s is not supported: '
            'nova-kvmx keeps instance disks as local qcow2 overlays '
            '(default, qcow2) or on Ceph (rbd)' % images_type)
    if conf.libvirt.images_rbd_glance_store_name:
        raise exception.HostNotSupported(
            reason='[libvirt] images_rbd_glance_store_name is not '
            'supported: nova-kvmx does not ask Glance to copy images into '
            'its cluster (it clones them when Glance keeps them there, '
            'else imports them)')
    if not conf.libvirt.images_rbd_pool:
        raise exception.HostNotSupported(
            reason='[libvirt] images_type = rbd needs images_rbd_pool')
    if conf.libvirt.rbd_user and not conf.libvirt.rbd_secret_uuid:
        raise exception.HostNotSupported(
            reason='[libvirt] images_type = rbd with rbd_user = %s needs '
            'rbd_secret_uuid: the libvirt secret QEMU reads its key from'
            % conf.libvirt.rbd_user)
    return RBDSettings(
        pool=conf.libvirt.images_rbd_pool,
        ceph_conf=conf.libvirt.images_rbd_ceph_conf or None,
        user=conf.libvirt.rbd_user,
        secret_uuid=conf.libvirt.rbd_secret_uuid,
        connect_timeout=conf.libvirt.rbd_connect_timeout,
        never_download=conf.workarounds.never_download_image_if_on_rbd,
        cache=cache)


def bindings():
    """The rados and rbd modules, given to Nova's rbd_utils as well (which
    tried to import them once, when it was imported).

    :raises: HostNotSupported naming the packages when they are missing
    """
    try:
        import rados
        import rbd
    except ImportError as ex:
        raise exception.HostNotSupported(
            reason='[libvirt] images_type = rbd needs the Python bindings '
            'of librados and librbd (Debian/Ubuntu: python3-rados '
            'python3-rbd) importable by nova-compute: %s' % ex) from ex
    rbd_utils.rados, rbd_utils.rbd = rados, rbd
    return rados, rbd


class Driver(rbd_utils.RBDDriver):
    """Nova's RBD driver, with ``rbd_connect_timeout`` applied: librados
    ignores the timeout ``connect()`` takes and waits for Ceph's
    ``client_mount_timeout`` (300 s) when no monitor answers; the
    monitors and the pool's usage come from the monitors through the
    same connection rather than from the ``ceph`` command, which would
    wait as long."""

    def _connect_to_rados(self, pool=None):
        rados = rbd_utils.rados
        timeout = str(self.rbd_connect_timeout)
        client = rados.Rados(
            rados_id=self.rbd_user, conffile=self.ceph_conf or '',
            conf={'client_mount_timeout': timeout,
                  'rados_mon_op_timeout': timeout})
        try:
            client.connect()
            ioctx = client.open_ioctx(str(pool or self.pool))
            return client, ioctx
        except rados.Error:
            client.shutdown()
            raise

    def mon_command(self, prefix, **args):
        with rbd_utils.RADOSClient(self) as client:
            ret, out, err = client.cluster.mon_command(
                jsonutils.dumps(dict(args, prefix=prefix, format='json')),
                b'', timeout=self.rbd_connect_timeout)
        if ret:
            raise rbd_utils.rados.Error('%s: %s' % (
                prefix, encodeutils.safe_decode(err) or os.strerror(-ret)))
        return jsonutils.loads(out)

    def get_mon_addrs(self, strip_brackets=True):
        hosts, ports = [], []
        for mon in self.mon_command('mon dump')['mons']:
            host, _, port = mon['addr'].rpartition('/')[0].rpartition(':')
            hosts.append(host.strip('[]') if strip_brackets else host)
            ports.append(port)
        return hosts, ports

    def get_pool_info(self):
        stats = self.mon_command('df')
        for pool in stats['pools']:
            if pool['name'] == self.pool:
                return {'total': stats['stats']['total_bytes'],
                        'free': pool['stats']['max_avail'],
                        'used': pool['stats']['bytes_used']}
        raise rbd_utils.rados.ObjectNotFound(
            "error opening pool '%s'" % self.pool)

    def ceph_args(self):
        # The rbd command (import, export) gives up as librados does.
        return super().ceph_args() + [
            '--client_mount_timeout', str(self.rbd_connect_timeout)]


def cause(ex, settings):
    """What a failure of librados, librbd or the rbd command means, short
    (Nova keeps 255 characters of a fault)."""
    who = 'client.%s' % (settings.user or 'admin')
    text = str(ex)
    if isinstance(ex, processutils.ProcessExecutionError):
        lines = (ex.stderr or ex.stdout or '').strip().splitlines()
        text = lines[-1] if lines else ex.description
    if isinstance(ex, RuntimeError) and 'python libraries' in text:
        return 'the rados and rbd Python bindings are missing'
    if 'conf_read_file' in text:
        return 'cannot read %s ([libvirt] images_rbd_ceph_conf)' % (
            settings.ceph_conf or 'the default ceph.conf (/etc/ceph)')
    if 'timed out' in text.lower():
        return ('no Ceph monitor answered within %d s ([libvirt] '
                'rbd_connect_timeout; monitors of %s)' % (
                    settings.connect_timeout,
                    settings.ceph_conf or 'the default ceph.conf'))
    if 'error connecting to the cluster' in text and (
            'permission denied' in text.lower()):
        return ('cephx refused %s: wrong key in its keyring (%s)' % (
            who, settings.ceph_conf or 'the default ceph.conf'))
    if 'error connecting to the cluster' in text:
        return ('cannot connect as %s: no keyring or monitors for it in '
                '%s' % (who, settings.ceph_conf or 'the default ceph.conf'))
    if 'permission' in text.lower() or 'not permitted' in text:
        return '%s may not do this (its caps): %s' % (who, text)
    if 'error opening pool' in text:
        return 'pool %s does not exist' % settings.pool
    return text or type(ex).__name__


class RBDDisks(object):
    """The instance disks of one pool."""

    def __init__(self, settings):
        self.settings = settings
        self._driver = None

    @property
    def driver(self):
        if self._driver is None:
            bindings()
            self._driver = Driver(
                pool=self.settings.pool, user=self.settings.user,
                ceph_conf=self.settings.ceph_conf,
                connect_timeout=self.settings.connect_timeout)
        return self._driver

    @contextlib.contextmanager
    def errors(self, what):
        """Turn a failure of Ceph into an RBDStorageError saying what was
        done and why it failed."""
        try:
            yield
        except (nova_exception.NovaException, exception.HostNotSupported):
            raise
        except Exception as ex:
            if not self._is_ceph_error(ex):
                raise
            raise exception.RBDStorageError(
                pool=self.settings.pool, reason='%s: %s' % (
                    what, cause(ex, self.settings))) from ex

    @staticmethod
    def _is_ceph_error(ex):
        errors = (processutils.ProcessExecutionError, RuntimeError)
        for module in (rbd_utils.rados, rbd_utils.rbd):
            if module is not None:
                errors += (module.Error,)
        return isinstance(ex, errors)

    # -- names ----------------------------------------------------------

    @staticmethod
    def image_name(instance, disk):
        return '%s_%s' % (instance.uuid, disk)

    def source(self, instance, disk, monitors):
        """The spec.RBDImage QEMU opens for ``disk`` of the instance."""
        return spec.RBDImage(
            name='%s/%s' % (self.settings.pool,
                            self.image_name(instance, disk)),
            hosts=monitors, auth_username=self.settings.user,
            auth_secret_uuid=(self.settings.secret_uuid
                              if self.settings.user else None))

    def monitors(self):
        """((host, port), ...) of the cluster's monitors."""
        with self.errors('reading the monitors'):
            return tuple(zip(*self.driver.get_mon_addrs()))

    def disks_of(self, instance):
        """The instance's disks (ROOT, EPHEMERAL, SWAP) that exist."""
        prefix = instance.uuid + '_'
        with self.errors('listing pool %s' % self.settings.pool):
            with rbd_utils.RADOSClient(self.driver) as client:
                names = rbd_utils.RbdProxy().list(client.ioctx)
        return {name[len(prefix):] for name in names
                if name.startswith(prefix)} & {ROOT, EPHEMERAL, SWAP}

    # -- creation --------------------------------------------------------

    def check_absent(self, instance):
        """Refuse to make the disks of an instance that has some: they
        are not a new guest's (the instance may run elsewhere)."""
        existing = self.disks_of(instance)
        if existing:
            raise exception.RBDImageExists(
                name='%s/%s' % (self.settings.pool, self.image_name(
                    instance, sorted(existing)[0])),
                instance_uuid=instance.uuid)

    def create_root(self, context, instance, image_id, size, fetch_base):
        """Clone the image's RBD snapshot, or import ``fetch_base()`` (a
        raw file), as the root disk of ``size`` bytes (0: the image's).

        :raises: FlavorDiskSmallerThanImage, ImageUnacceptable (with
            never_download_image_if_on_rbd), RBDStorageError
        """
        name = self.image_name(instance, ROOT)
        if not self.clone_image(context, image_id, name, instance):
            if self.settings.never_download:
                raise nova_exception.ImageUnacceptable(
                    image_id=image_id, reason='it is not in this host\'s '
                    'Ceph cluster as a raw image and [workarounds] '
                    'never_download_image_if_on_rbd is set')
            base = fetch_base()
            with self.errors('importing image %s as %s' % (image_id, name)):
                self.driver.import_image(base, name)
            LOG.info('Image %s imported into RBD image %s/%s', image_id,
                     self.settings.pool, name, instance=instance)
        self.fit(name, size)
        return name

    def clone_image(self, context, image_id, name, instance):
        """Clone the image where Glance keeps it in this cluster; False
        when it has no such location (or is not raw)."""
        image = IMAGE_API.get(context, image_id, include_locations=True)
        if image.get('disk_format') not in CLONEABLE_FORMATS:
            return False
        with self.errors('cloning image %s' % image_id):
            for location in image.get('locations') or ():
                if self.driver.is_cloneable(location, image):
                    self.driver.clone(location, name)
                    LOG.info('Root disk %s/%s cloned from %s',
                             self.settings.pool, name, location['url'],
                             instance=instance)
                    return True
        return False

    def fit(self, name, size):
        """Grow the image to ``size`` bytes; refuse a smaller size than
        the image has (0 keeps it)."""
        with self.errors('resizing %s' % name):
            current = self.driver.size(name)
            if size and size < current:
                raise nova_exception.FlavorDiskSmallerThanImage(
                    flavor_size=size, image_size=current)
            if size > current:
                self.driver.resize(name, size)

    def import_blank(self, instance, disk, base):
        """A disk of the instance made of a blank (formatted) raw file."""
        name = self.image_name(instance, disk)
        with self.errors('importing %s' % name):
            self.driver.import_image(base, name)
        return name

    def grow(self, instance, disk, size):
        """Grow an existing disk to ``size`` bytes (never shrink)."""
        name = self.image_name(instance, disk)
        with self.errors('resizing %s' % name):
            if size > self.driver.size(name):
                self.driver.resize(name, size)

    # -- removal ---------------------------------------------------------

    def remove(self, instance, disks=None):
        """Remove the instance's disks (``disks``: those names only), with
        their resize snapshots; Nova's retries while an image is busy."""
        prefix = instance.uuid + '_'
        names = None if disks is None else {
            self.image_name(instance, d) for d in disks}
        with self.errors('removing the disks of %s' % instance.uuid):
            self.driver.cleanup_volumes(
                lambda name: name.startswith(prefix) and (
                    names is None or name in names))

    # -- resize ----------------------------------------------------------

    def snapshot_for_resize(self, instance):
        """Keep the disks as they are for a revert (Nova's
        ``nova-resize`` snapshot)."""
        for disk in sorted(self.disks_of(instance) - {SWAP}):
            name = self.image_name(instance, disk)
            with self.errors('snapshotting %s' % name):
                self.driver.remove_snap(name, RESIZE_SNAPSHOT,
                                        ignore_errors=True)
                self.driver.create_snap(name, RESIZE_SNAPSHOT)

    def revert_resize(self, instance):
        """Bring the disks back to their resize snapshot (size included)
        and drop it."""
        for disk in sorted(self.disks_of(instance) - {SWAP}):
            name = self.image_name(instance, disk)
            with self.errors('reverting %s' % name):
                try:
                    self.driver.rollback_to_snap(name, RESIZE_SNAPSHOT)
                except nova_exception.SnapshotNotFound:
                    # Made after the snapshot (a new ephemeral disk).
                    self.driver.destroy_volume(name)
                    continue
                self.driver.remove_snap(name, RESIZE_SNAPSHOT)

    def drop_resize_snapshot(self, instance):
        for disk in sorted(self.disks_of(instance) - {SWAP}):
            name = self.image_name(instance, disk)
            with self.errors('removing the resize snapshot of %s' % name):
                self.driver.remove_snap(name, RESIZE_SNAPSHOT,
                                        ignore_errors=True)

    # -- snapshots of the root disk --------------------------------------

    @contextlib.contextmanager
    def root_snapshot(self, instance, cut=contextlib.nullcontext):
        """An RBD snapshot of the root disk, taken inside ``cut()`` (a
        guest's freeze), protected (it can be cloned), removed after."""
        name = self.image_name(instance, ROOT)
        snap = 'kvmx-snapshot-%s' % uuid.uuid4().hex[:12]
        with self.errors('snapshotting %s' % name):
            with cut():
                self.driver.create_snap(name, snap, protect=True)
        try:
            yield name, snap
        finally:
            try:
                with self.errors('removing snapshot %s@%s' % (name, snap)):
                    self.driver.remove_snap(name, snap, force=True)
            except exception.RBDStorageError:
                LOG.exception('Snapshot %s@%s of %s/%s stays behind', name,
                              snap, self.settings.pool, name,
                              instance=instance)

    def clone_into_glance_pool(self, context, instance, name, snap,
                               image_id):
        """Clone the snapshot into the pool Glance keeps the instance's
        image in (as Nova's Rbd.direct_snapshot), flattened, with Glance's
        protected ``snap``; its location URL.

        :raises: ImageUnacceptable when Glance keeps the instance's image
            in no pool of this cluster, Forbidden when this user may not
            write there
        """
        with self.errors('cloning %s@%s into Glance\'s pool' % (name, snap)):
            fsid = encodeutils.safe_decode(self.driver.get_fsid())
            pool = self.glance_pool(context, instance, name, fsid)
            source = {'url': 'rbd://%s/%s/%s/%s' % (
                fsid, self.settings.pool, name, snap)}
            self.driver.clone(source, image_id, dest_pool=pool)
            try:
                self.driver.flatten(image_id, pool=pool)
                self.driver.create_snap(image_id, GLANCE_SNAPSHOT, pool=pool,
                                        protect=True)
            except Exception:
                self.remove_glance_image(image_id, pool)
                raise
        return 'rbd://%s/%s/%s/%s' % (fsid, pool, image_id, GLANCE_SNAPSHOT)

    def glance_pool(self, context, instance, name, fsid):
        """The pool of the root disk's parent (a clone's), else of the
        instance's image's location in this cluster."""
        try:
            return self.driver.parent_info(name)[0]
        except nova_exception.ImageUnacceptable:
            pass
        try:
            image = IMAGE_API.get(context, instance.image_ref,
                                  include_locations=True)
        except nova_exception.NovaException:
            image = {}
        for location in image.get('locations') or ():
            try:
                parent_fsid, pool, _image, _snap = self.driver.parse_url(
                    location['url'])
            except nova_exception.ImageUnacceptable:
                continue
            if parent_fsid == fsid:
                return pool
        raise nova_exception.ImageUnacceptable(
            image_id=instance.image_ref, reason='Glance keeps it in no '
            'pool of this Ceph cluster')

    def remove_glance_image(self, image_id, pool):
        """Undo clone_into_glance_pool (the image update failed)."""
        try:
            with self.errors('removing %s/%s' % (pool, image_id)):
                self.driver.remove_snap(image_id, GLANCE_SNAPSHOT, pool=pool,
                                        force=True, ignore_errors=True)
                self.driver.destroy_volume(image_id, pool=pool)
        except exception.RBDStorageError:
            LOG.exception('RBD image %s/%s stays behind', pool, image_id)

    def export(self, name, snap, path):
        """Write the snapshot to ``path`` (raw)."""
        with self.errors('exporting %s@%s' % (name, snap)):
            self.driver.export_image(path, name, snap)

    # -- the host --------------------------------------------------------

    def pool_usage_gb(self):
        """(total, used, free) GiB of the pool, as Nova reports it."""
        with self.errors('reading the usage of pool %s' %
                         self.settings.pool):
            info = self.driver.get_pool_info()
        return (info['total'] // units.Gi, info['used'] // units.Gi,
                info['free'] // units.Gi)

    def check_secret(self, conn):
        """The libvirt secret QEMU reads the key from must exist.

        :raises: HostNotSupported naming it
        """
        if not self.settings.user:
            return
        try:
            conn.secretLookupByUUIDString(self.settings.secret_uuid)
        except Exception as ex:
            raise exception.HostNotSupported(
                reason='libvirt secret %s ([libvirt] rbd_secret_uuid, the '
                'key of client.%s) is not defined on this host: %s' % (
                    self.settings.secret_uuid, self.settings.user,
                    ex)) from ex
