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

"""Errors of nova-kvmx.

Each subclasses the Nova exception that Nova's compute manager already
knows how to handle, so Nova reacts to them as to its own driver's errors,
while the message tells the operator what to fix.
"""

from nova import exception


class HostNotSupported(exception.InvalidConfiguration):
    msg_fmt = ('This host cannot run nova-kvmx guests: %(reason)s')


class GuestStartFailed(exception.InternalError):
    msg_fmt = ('Guest %(name)s did not start: %(reason)s')


class UnsupportedVIFType(exception.InternalError):
    msg_fmt = ('nova-kvmx does not support VIF type %(vif_type)s of port '
               '%(port_id)s')


class UnknownVnicType(exception.InternalError):
    msg_fmt = ('Port %(port_id)s has vnic_type %(vnic_type)s, which Neutron '
               'does not define')


class PortWithoutDevice(exception.InternalError):
    msg_fmt = ('Port %(port_id)s (vnic_type %(vnic_type)s) has no PCI device '
               'or VF netdev on this host in its binding')


class InvalidPortBinding(exception.InternalError):
    msg_fmt = ('Port %(port_id)s has an invalid binding: %(reason)s')


class UnclaimedDevice(exception.InternalError):
    msg_fmt = ('PCI device %(address)s of %(owner)s was not claimed by Nova '
               'for this instance')


class ClaimedDeviceMissing(exception.PciDeviceNotFoundById):
    msg_fmt = ('PCI device %(id)s claimed for %(owner)s is not on this host '
               '(anymore): libvirt does not know it')


class PFWithoutSRIOV(exception.PciDeviceNotFoundById):
    msg_fmt = ('VF %(id)s claimed for %(owner)s is gone: its PF %(pf)s no '
               'longer has SR-IOV virtual functions enabled')


class VIFPlugFailed(exception.VirtualInterfacePlugException):
    msg_fmt = ('Could not plug port %(port_id)s: %(reason)s')


class LibvirtUnreachable(exception.HypervisorUnavailable,
                         exception.VirtDriverNotReady):
    # Also "driver not ready": Nova's periodic tasks (resource update,
    # power state sync, cleanup of deleted guests) then skip their run with
    # a warning while libvirtd is away, instead of failing with a trace.
    msg_fmt = ('Cannot connect to libvirt at %(uri)s: is libvirtd running '
               'and is [libvirt] connection_uri right?')


class ImageFetchFailed(exception.NovaException):
    msg_fmt = ('Could not fetch image %(image_id)s: %(reason)s')


class ImageVerificationFailed(exception.CertificateValidationFailed):
    """A CertificateValidationFailed, so that Nova aborts the build
    rather than trying another host, which names the image."""
    msg_fmt = ('Image %(image_id)s failed its signature verification: '
               '%(reason)s')


class ImageTooLarge(exception.FlavorDiskSmallerThanImage):
    # No flavor root disk bounds the image (rescue, kernel, ramdisk,
    # root_gb=0): the operator's cap does.
    msg_fmt = ('Image %(image_id)s is too large: its virtual size is '
               '%(image_size)i bytes, more than the %(limit)i bytes '
               '[kvmx] max_image_virtual_size_gb allows an image that no '
               'flavor root disk bounds')


class LiveMigrationFailed(exception.MigrationError):
    msg_fmt = ('Live migration to %(dest)s failed, the guest carried on at '
               '%(source)s: %(reason)s')


class LiveMigrationTimedOut(exception.MigrationError):
    msg_fmt = ('Live migration to %(dest)s did not complete within '
               '%(timeout)d seconds ([libvirt] '
               'live_migration_completion_timeout, per GiB of memory and '
               'copied disk) and was aborted; the guest carried on at '
               '%(source)s')


class InvalidCPUQuota(exception.Invalid):
    msg_fmt = ('Flavor extra spec %(key)s=%(value)s cannot be applied: '
               '%(reason)s')


class VIFPlugTimedOut(exception.VirtualInterfaceCreateException):
    # Nova's compute manager fails a build on this exception's base class
    # without rescheduling, as for Nova's libvirt driver.
    msg_fmt = ('Neutron did not report port(s) %(ports)s plugged '
               '(network-vif-plugged) within %(timeout)d seconds ([DEFAULT] '
               'vif_plugging_timeout); check the Neutron agent wiring them '
               'on this host')


class VIFPlugReportedFailed(exception.VirtualInterfaceCreateException):
    msg_fmt = ('Neutron reported that plugging port %(port_id)s failed '
               '(network-vif-plugged with status failed)')


class UnsupportedVolumeType(exception.VolumeDriverNotFound):
    msg_fmt = ('nova-kvmx does not attach %(driver_type)s volumes (volume '
               '%(volume_id)s); it attaches %(supported)s volumes')


class InvalidConnectionInfo(exception.VolumeAttachFailed):
    msg_fmt = ('Volume %(volume_id)s cannot be given to the guest: its '
               'connection info is invalid: %(reason)s')


class UnsupportedVolumeDevice(exception.InvalidBDM):
    msg_fmt = ('Volume %(volume_id)s cannot be given to the guest as '
               '%(what)s: %(reason)s')


class VolumeConnectFailed(exception.VolumeAttachFailed):
    # Short: Nova keeps 255 characters of a fault's message.
    msg_fmt = ('Cannot connect volume %(volume_id)s: %(reason)s')


class RBDStorageError(exception.StorageError):
    # Short, cause first: Nova keeps 255 characters of a fault's message.
    msg_fmt = ('Ceph RBD pool %(pool)s ([libvirt] images_type=rbd): '
               '%(reason)s')


class RBDImageExists(exception.InstanceExists):
    msg_fmt = ('RBD image %(name)s exists already: the disks of instance '
               '%(instance_uuid)s are not this spawn\'s to make')


class UnsupportedKey(exception.Invalid):
    msg_fmt = ('The %(kind)s %(key)s=%(value)s cannot be honoured by '
               'nova-kvmx: %(reason)s')


class InvalidOption(exception.InvalidConfiguration):
    msg_fmt = ('Invalid %(option)s = %(value)s: %(reason)s')


class UnsupportedOption(exception.InvalidConfiguration):
    msg_fmt = ('%(option)s = %(value)s is not supported by nova-kvmx: '
               '%(reason)s')
