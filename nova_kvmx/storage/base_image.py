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

"""Base images of the image cache: fetched from Glance with their virtual
size bounded before anything expands them, and read back in the format
they really have.

Nova's ``fetch_to_raw`` converts an image to raw before its size is
compared with anything, so a small compressed qcow2 with a large virtual
size fills the instances directory first and fails the flavor check
after. Here Nova's own checks of the download (its format inspector,
``qemu-img info``, no backing file, no data file, VMDK create-type) run
first, then the virtual size is compared with the disk the image is for,
and only then is it converted (``[DEFAULT] force_raw_images``).
"""

import dataclasses
import os

from cryptography import exceptions as crypto_exceptions
from cursive import exception as cursive_exception
from nova import exception as nova_exception
import nova.conf
from nova.virt import images
from oslo_log import log as logging
from oslo_utils import fileutils
from oslo_utils.imageutils import format_inspector
from oslo_utils import units

from nova_kvmx import exception

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SizeLimit:
    """The largest virtual size, in bytes, an image may have: the
    flavor's root disk, or ``[kvmx] max_image_virtual_size_gb`` for an
    image no root disk bounds (rescue, kernel, ramdisk, ``root_gb=0``)."""

    size: int
    flavor: bool = False

    def check(self, image_id, virtual_size):
        if virtual_size <= self.size:
            return
        LOG.error('Image %s has a virtual size of %d bytes, more than %d',
                  image_id, virtual_size, self.size)
        if self.flavor:
            raise nova_exception.FlavorDiskSmallerThanImage(
                flavor_size=self.size, image_size=virtual_size)
        raise exception.ImageTooLarge(image_id=image_id,
                                      image_size=virtual_size,
                                      limit=self.size)


def size_limit(root_gb, max_gb):
    """The SizeLimit of an image for a root disk of ``root_gb`` (0: the
    image's own size), None when nothing bounds it (``max_gb`` 0)."""
    if root_gb:
        return SizeLimit(root_gb * units.Gi, flavor=True)
    if max_gb:
        return SizeLimit(max_gb * units.Gi)
    return None


def fetch(fetch_func, context, image_id, path, trusted_certs=None):
    """Run one of nova.virt.images' fetch functions; failures that are not
    already Nova's (a broken download stream, a full disk) become an
    ImageFetchFailed naming the image, failed signature or certificate
    checks an ImageVerificationFailed naming it."""
    try:
        fetch_func(context, image_id, path, trusted_certs=trusted_certs)
    except (nova_exception.CertificateValidationFailed,
            cursive_exception.SignatureVerificationError) as ex:
        raise exception.ImageVerificationFailed(
            image_id=image_id, reason=str(ex)) from ex
    except crypto_exceptions.InvalidSignature as ex:
        raise exception.ImageVerificationFailed(
            image_id=image_id, reason='its data does not match its '
            'signature (img_signature)') from ex
    except nova_exception.NovaException:
        raise
    except Exception as ex:
        raise exception.ImageFetchFailed(
            image_id=image_id, reason=str(ex) or type(ex).__name__) from ex


def fetch_file(context, image_id, path, limit, trusted_certs=None):
    """Download an image QEMU reads as a file (kernel, ramdisk) to
    ``path``; one larger than ``limit`` is removed and refused."""
    fetch(images.fetch, context, image_id, path, trusted_certs)
    with fileutils.remove_path_on_error(path):
        if limit is not None:
            limit.check(image_id, os.path.getsize(path))


def fetch_base(context, image_id, path, limit, force_raw=True,
               trusted_certs=None):
    """Download an image to ``path``, raw when ``force_raw``, else in
    its own format; nothing is left when it is refused.

    :param limit: the SizeLimit of its virtual size, checked on the
        download before it is converted (None: unbounded)
    :param trusted_certs: the instance's TrustedCerts (storage.cached_image)
    :raises: ImageUnacceptable, FlavorDiskSmallerThanImage, ImageTooLarge,
        ImageVerificationFailed
    """
    part = path + '.part'
    fetch(images.fetch, context, image_id, part, trusted_certs)
    with fileutils.remove_path_on_error(part):
        info = inspect(context, image_id, part)
        if limit is not None:
            limit.check(image_id, info.virtual_size)
        if info.file_format == 'raw' or not force_raw:
            os.rename(part, path)
            return
        LOG.debug('%s was %s, converting to raw', image_id, info.file_format)
        converted = path + '.converted'
        with fileutils.remove_path_on_error(converted):
            try:
                images.convert_image(part, converted, info.file_format,
                                     'raw')
            except nova_exception.ImageUnacceptable as ex:
                raise nova_exception.ImageUnacceptable(
                    image_id=image_id,
                    reason='Unable to convert image to raw: %s' % ex)
            os.unlink(part)
            os.rename(converted, path)


def inspect(context, image_id, path):
    """``qemu-img info`` of a downloaded image, once Nova's format
    inspector agrees with its Glance ``disk_format`` (unless ``[workarounds]
    disable_deep_image_inspection``) and qemu-img with the inspector.

    :raises: ImageUnacceptable
    """
    expected = None
    if not CONF.workarounds.disable_deep_image_inspection:
        expected = images.do_image_deep_inspection(
            images.get_info(context, image_id), image_id, path)
    # qemu-img runs only once the inspector accepted the file.
    info = images.qemu_img_info(path)
    if info.file_format is None:
        raise nova_exception.ImageUnacceptable(
            image_id=image_id, reason="'qemu-img info' parsing failed.")
    if expected is not None and info.file_format != expected:
        raise nova_exception.ImageUnacceptable(
            image_id=image_id, reason='qemu-img detects %s, Glance says %s'
            % (info.file_format, expected))
    problem = unsafe(info)
    if problem:
        raise nova_exception.ImageUnacceptable(image_id=image_id,
                                               reason=problem)
    if info.file_format == 'vmdk':
        images.check_vmdk_image(image_id, info)
    return info


def unsafe(info):
    """Why QEMU must not open an image as ``info`` describes it (it
    would read another file), None if it may."""
    if info.backing_file is not None:
        return 'fmt=%s backed by: %s' % (info.file_format, info.backing_file)
    try:
        data_file = info.format_specific['data']['data-file']
    except (KeyError, TypeError):
        data_file = None
    if data_file is not None:
        return 'fmt=%s has data-file: %s' % (info.file_format, data_file)
    return None


def base_info(path):
    """``qemu-img info`` of a cached base image in the format it really
    has (raw, or the image's own with ``force_raw_images = False``),
    checked again each time as Nova's libvirt driver does: Nova's
    inspector's safety checks may have grown since the download.

    :raises: InvalidDiskInfo
    """
    if not CONF.workarounds.disable_deep_image_inspection:
        try:
            images.get_image_format(path).safety_check()
        except (format_inspector.SafetyCheckFailed,
                format_inspector.ImageFormatError) as ex:
            LOG.warning('Base image %s failed safety check: %s', path, ex)
            raise nova_exception.InvalidDiskInfo(
                reason='Base image %s failed safety check' %
                os.path.basename(path))
    info = images.qemu_img_info(path)
    problem = unsafe(info)
    if problem or info.file_format is None:
        raise nova_exception.InvalidDiskInfo(reason='Base image %s: %s' % (
            os.path.basename(path), problem or 'unknown format'))
    if info.file_format == 'vmdk':
        images.check_vmdk_image(os.path.basename(path), info)
    return info
