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

"""Quiescing a guest: its filesystems frozen through the QEMU guest agent.

With Nova's libvirt driver's rules and errors: an image with
``hw_qemu_guest_agent=yes`` gets the agent's channel and may be frozen;
without it, quiescing raises QemuGuestAgentNotEnabled; libvirt failing to
reach the agent is InstanceQuiesceFailed, any other libvirt error
InternalError. A snapshot freezes when it can, and fails instead of
snapshotting unquiesced only when the image says ``os_require_quiesce`` --
also when the freeze itself fails, where Nova's libvirt driver carries on
unquiesced whatever the image says.
"""

import contextlib

from nova import exception
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None


def check_agent(image_meta):
    """:raises: QemuGuestAgentNotEnabled unless the image has the agent"""
    if not image_meta.properties.get('hw_qemu_guest_agent', False):
        raise exception.QemuGuestAgentNotEnabled()


def required(image_meta):
    return image_meta.properties.get('os_require_quiesce', False)


def freeze(guest, instance):
    """Freeze the guest's filesystems; return how many were frozen."""
    # Nova's Guest.freeze_filesystems drops the count libvirt returns; an
    # operator reading the log wants it (0: nothing was really frozen).
    count = _agent_call(guest._domain.fsFreeze, 'freezing', instance)
    LOG.info('Froze %d filesystem(s) of the guest', count,
             instance=instance)
    return count


def thaw(guest, instance):
    """Thaw the guest's filesystems; return how many were thawed."""
    count = _agent_call(guest._domain.fsThaw, 'thawing', instance)
    LOG.info('Thawed %d filesystem(s) of the guest', count,
             instance=instance)
    return count


def _agent_call(call, doing, instance):
    try:
        return call()
    except libvirt.libvirtError as ex:
        code = ex.get_error_code()
        # Short: Nova keeps 255 characters of a fault's message.
        msg = ('libvirt failed %s the guest\'s filesystems: [Error Code '
               '%s] %s' % (doing, code, ex))
        if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
            raise exception.InstanceQuiesceFailed(
                reason=msg + '. Is qemu-guest-agent running in the guest?')
        raise exception.InternalError(msg)


def check_snapshot(instance, image_meta):
    """Whether a live snapshot of the guest should freeze it.

    :raises: QemuGuestAgentNotEnabled for an image that requires
        quiescing and has no agent: before anything starts
    """
    try:
        check_agent(image_meta)
    except exception.QemuGuestAgentNotEnabled as err:
        if required(image_meta):
            LOG.error('The image requires quiescing (os_require_quiesce) '
                      'for a snapshot, which it cannot have: %s', err,
                      instance=instance)
            raise
        LOG.info('Snapshot without quiescing: %s', err, instance=instance)
        return False
    return True


@contextlib.contextmanager
def frozen_for_snapshot(guest, instance, image_meta):
    """The guest's filesystems frozen while the body runs, thawed after,
    whatever happens. A failed freeze fails the snapshot if the image
    requires quiescing, else the body runs unquiesced."""
    frozen = True
    try:
        freeze(guest, instance)
    except exception.NovaException as err:
        # The agent undoes a freeze that failed half-way, but not one
        # libvirt stopped waiting for (an agent timeout set on the domain,
        # the agent's connection lost): thaw, whatever it did.
        _thaw_quietly(guest, instance)
        if required(image_meta):
            raise
        LOG.warning('Could not quiesce the guest, snapshotting it '
                    'unquiesced (os_require_quiesce is not set): %s', err,
                    instance=instance)
        frozen = False
    try:
        yield
    finally:
        if frozen:
            thaw(guest, instance)


def _thaw_quietly(guest, instance):
    try:
        thaw(guest, instance)
    except exception.NovaException as err:
        LOG.debug('Thaw after a failed freeze: %s', err, instance=instance)
