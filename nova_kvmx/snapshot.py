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

"""Snapshots of a guest's root disk, uploaded to Glance.

Live while QEMU has the disk open (running or paused guest): a shallow
block copy (libvirt ``blockCopy`` as a transient job, so the persistent
domain stays defined and untouched) mirrors the top of the root disk onto
a new qcow2 over the same base; once in sync the job is cancelled, which
leaves that new file as a point-in-time copy while the guest keeps
running on its own disk. Cold otherwise: the overlay is read directly.
Either way the copy and its base are flattened into one image of the
source image's format (raw or qcow2) and uploaded.

A root disk on RBD (``[libvirt] images_type = rbd``) is cut by an RBD
snapshot, the guest running on. As Nova's libvirt driver's direct
snapshot, it is cloned into the pool Glance keeps the instance's image
in (same cluster), flattened, and Glance is given its location, no byte
passing through this host; where Glance keeps the image elsewhere, or
this host's cephx user may not write Glance's pool, the snapshot is
exported and uploaded (raw, as Nova's libvirt driver makes snapshots of
RBD disks).

A live guest with the QEMU guest agent (``hw_qemu_guest_agent``) is
quiesced for the cut: its filesystems are frozen once the copy is in sync,
just before the job is cancelled (on RBD: while the RBD snapshot is
taken), and thawed right after, as Nova's libvirt driver does (see
:mod:`nova_kvmx.quiesce` for when a failure to quiesce fails the
snapshot).
"""

import contextlib
import os
import shutil
import tempfile
import time

from nova.compute import task_states
from nova import exception
from nova.image import glance
import nova.privsep.path
from nova.virt import images
from lxml import etree
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils

from nova_kvmx import quiesce
from nova_kvmx import storage as instance_storage

LOG = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
UPLOAD_FORMATS = ('raw', 'qcow2')
# The work directory: private, but traversable by QEMU's user while it
# writes the live copy there.
WORKDIR_MODE = 0o700
WORKDIR_MODE_FOR_QEMU = 0o711


class Snapshotter(object):
    def __init__(self, lifecycle, storage, timeout):
        """:param timeout: seconds a live copy may take to get in sync"""
        self.lifecycle = lifecycle
        self.storage = storage
        self.timeout = timeout
        self.image_api = glance.API()

    def snapshot(self, context, instance, image_id, update_task_state):
        guest = self.lifecycle.find_guest(instance)
        if guest is None:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        image_meta = instance.image_meta
        # A stopped guest's disk is consistent: only a live one is frozen.
        live = guest.is_active()
        freeze = live and quiesce.check_snapshot(instance, image_meta)
        name = self.image_api.get(context, image_id)['name']
        if self.storage.rbd is not None:
            self.rbd_snapshot(context, instance, image_id, update_task_state,
                              guest, freeze, name)
            LOG.info('Snapshot uploaded as image %s', image_id,
                     instance=instance)
            return
        disk_format = image_meta.disk_format \
            if 'disk_format' in image_meta and \
            image_meta.disk_format in UPLOAD_FORMATS else 'qcow2'
        root = self.storage.files_of(instance).root_disk

        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        with self.workdir() as workdir:
            out = os.path.join(workdir, 'snapshot')
            try:
                self.extract(guest, live, freeze, root, workdir, out,
                             disk_format, instance)
            except Exception:
                with excutils.save_and_reraise_exception():
                    LOG.exception('Snapshot of the root disk failed',
                                  instance=instance)
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            with open(out, 'rb') as data:
                self.image_api.update(
                    context, image_id,
                    snapshot_metadata(instance, name, disk_format),
                    data=data, purge_props=False)
        LOG.info('Snapshot uploaded as image %s', image_id, instance=instance)

    def rbd_snapshot(self, context, instance, image_id, update_task_state,
                     guest, freeze, name):
        """An RBD snapshot of the root disk, given to Glance as a clone in
        its pool, else uploaded."""
        rbd = self.storage.rbd
        metadata = snapshot_metadata(instance, name, 'raw')
        if freeze:
            def cut():
                return quiesce.frozen_for_snapshot(guest, instance,
                                                   instance.image_meta)
        else:
            cut = contextlib.nullcontext
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        with rbd.root_snapshot(instance, cut) as (disk, snap):
            try:
                location = rbd.clone_into_glance_pool(
                    context, instance, disk, snap, image_id)
            except (exception.ImageUnacceptable, exception.Forbidden) as ex:
                LOG.info('Snapshot not cloned in Ceph (%s): uploading it',
                         ex, instance=instance)
                location = None
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            if location is not None:
                self.give_location(context, image_id, metadata, location)
                return
            with self.workdir() as workdir:
                out = os.path.join(workdir, 'snapshot')
                rbd.export(disk, snap, out)
                with open(out, 'rb') as data:
                    self.image_api.update(context, image_id, metadata,
                                          data=data, purge_props=False)

    def give_location(self, context, image_id, metadata, location):
        """The image is the clone at ``location``; removed again if Glance
        does not take it."""
        try:
            self.image_api.update(context, image_id,
                                  dict(metadata, location=location),
                                  purge_props=False)
        except Exception:
            with excutils.save_and_reraise_exception():
                _fsid, pool, image, _snap = location[len('rbd://'):].split(
                    '/')
                self.storage.rbd.remove_glance_image(image, pool)

    def extract(self, guest, live, freeze, root, workdir, out, disk_format,
                instance):
        if live:
            LOG.info('Live snapshot of the root disk', instance=instance)
            delta = os.path.join(workdir, 'delta')
            with open_to_qemu(workdir):
                self.live_copy(guest, root, delta, freeze, instance)
            source = delta
        else:
            LOG.info('Cold snapshot of the root disk', instance=instance)
            source = root
        # Every file made from the guest's disk is 0600 before qemu-img
        # writes it (it keeps an existing file's mode).
        instance_storage.private_file(out)
        images.convert_image(source, out, 'qcow2', disk_format)

    @contextlib.contextmanager
    def workdir(self):
        """A private (0700) directory under the instances path, opened to
        QEMU's user only while QEMU writes a live copy there: the name,
        which qemu-img's command line shows every local user, leads
        nowhere."""
        parent = os.path.join(self.storage.instances_path, 'snapshots')
        os.makedirs(parent, mode=0o711, exist_ok=True)
        path = tempfile.mkdtemp(dir=parent)
        os.chmod(path, WORKDIR_MODE)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def live_copy(self, guest, root, delta, freeze, instance):
        """Leave in ``delta`` a point-in-time copy of the top of ``root``,
        quiesced if ``freeze``."""
        info = images.qemu_img_info(root, format='qcow2')
        instance_storage.private_file(delta)
        # On the root disk's base, so the shallow copy is its top; a disk
        # without one (use_cow_images = False) is copied whole.
        backing = ['-F', info.backing_file_format or 'raw',
                   '-b', info.backing_file] if info.backing_file else []
        processutils.execute(
            'qemu-img', 'create', '-f', 'qcow2', *backing, delta,
            str(info.virtual_size))
        target = guest_disk_target(guest, root)
        device = guest.get_block_device(target)
        device.copy(copy_destination(delta), shallow=True, reuse_ext=True,
                    transient=True)
        try:
            self.wait_in_sync(device)
            # Frozen only for the cut, which keeps the guest's writes
            # stopped for as short as possible: cancelling a synced copy
            # leaves ``delta`` a point-in-time copy, the guest stays on
            # its own disk.
            if freeze:
                cut = quiesce.frozen_for_snapshot(guest, instance,
                                                  instance.image_meta)
            else:
                cut = contextlib.nullcontext()
            with cut:
                device.abort_job()
        except Exception:
            with excutils.save_and_reraise_exception():
                cancel_quietly(device)
        # libvirt gave the copy to QEMU's user: take it back to read it.
        nova.privsep.path.chown(delta, uid=os.getuid())

    def wait_in_sync(self, device):
        deadline = time.monotonic() + self.timeout
        while not device.is_job_complete():
            if time.monotonic() > deadline:
                raise exception.NovaException(
                    'The live copy of the root disk was not in sync after '
                    '%ds ([kvmx] snapshot_timeout)' % self.timeout)
            time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def open_to_qemu(workdir):
    """``workdir`` traversable (not listable) by QEMU's user for the
    time QEMU writes the live copy, private again after."""
    os.chmod(workdir, WORKDIR_MODE_FOR_QEMU)
    try:
        yield
    finally:
        os.chmod(workdir, WORKDIR_MODE)


def cancel_quietly(device):
    """Cancel a block job that may already be gone (after an error)."""
    try:
        device.abort_job()
    except Exception as ex:
        LOG.debug('Block job not cancelled: %s', ex)


def guest_disk_target(guest, path):
    """The target device (vda, sda) of the guest disk backed by ``path``."""
    for disk in guest.get_all_disks():
        if disk.source_path == path:
            return disk.target_dev
    raise exception.DiskNotFound(location=path)


def copy_destination(path):
    """The <disk> XML a block copy writes to: an existing qcow2 file."""
    disk = etree.Element('disk', type='file')
    etree.SubElement(disk, 'driver', type='qcow2')
    etree.SubElement(disk, 'source', file=path)
    return etree.tostring(disk, encoding='unicode')


def snapshot_metadata(instance, name, disk_format):
    """The image record Nova's libvirt driver gives a snapshot."""
    properties = {
        'image_location': 'snapshot',
        'image_state': 'available',
        'owner_id': instance.project_id,
        'kernel_id': instance.kernel_id,
        'ramdisk_id': instance.ramdisk_id,
    }
    if instance.get('os_type'):
        properties['os_type'] = instance.os_type
    return {'name': name, 'status': 'active', 'disk_format': disk_format,
            'container_format': 'bare', 'properties': properties}
