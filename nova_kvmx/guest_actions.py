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

"""What a user asks of a running guest: a crash dump (an NMI) and a new
admin password (through the QEMU guest agent), as Nova's libvirt driver
does them."""

from nova.api.metadata import password
from nova import crypto
from nova import exception
from oslo_log import log as logging
from oslo_serialization import base64

from nova_kvmx import quiesce

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

LOG = logging.getLogger(__name__)


def inject_nmi(guest, instance):
    """``POST /servers/{id}/action {"trigger_crash_dump": null}``: an NMI,
    which a Linux guest with ``panic_on_unrecovered_nmi`` (or kdump)
    answers with a crash dump.

    :raises: TriggerCrashDumpNotSupported where libvirt cannot inject one,
        InstanceNotRunning when the guest is not running
    """
    try:
        guest.inject_nmi()
    except libvirt.libvirtError as ex:
        code = ex.get_error_code()
        if code == libvirt.VIR_ERR_NO_SUPPORT:
            raise exception.TriggerCrashDumpNotSupported()
        if code == libvirt.VIR_ERR_OPERATION_INVALID:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        LOG.exception('Error from libvirt while injecting an NMI: '
                      '[Error Code %(code)s] %(ex)s',
                      {'code': code, 'ex': ex}, instance=instance)
        raise
    LOG.info('Injected an NMI (crash dump requested)', instance=instance)


def admin_user(instance):
    """The image's ``os_admin_user``, else Administrator for Windows and
    root for the others (as Nova)."""
    user = instance.image_meta.properties.get('os_admin_user')
    if user:
        return user
    return 'Administrator' if instance.os_type == 'windows' else 'root'


def set_admin_password(guest, instance, new_pass):
    """``POST /servers/{id}/action {"changePassword": ...}`` through the
    guest agent (images with ``hw_qemu_guest_agent=yes``).

    :raises: QemuGuestAgentNotEnabled for an image without the agent,
        NotImplementedError when the agent does not answer (Nova's API
        answers 501 "not implemented by the virt driver", as for Nova's
        libvirt driver), InternalError for another libvirt error
    """
    quiesce.check_agent(instance.image_meta)
    user = admin_user(instance)
    try:
        guest.set_user_password(user, new_pass)
    except libvirt.libvirtError as ex:
        code = ex.get_error_code()
        if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
            LOG.debug('Failed to set password: QEMU agent unresponsive',
                      instance=instance)
            raise NotImplementedError()
        raise exception.InternalError(
            'Error from libvirt while setting the password of user '
            '"%(user)s": [Error Code %(code)s] %(ex)s'
            % {'user': user, 'code': code, 'ex': ex})
    LOG.info('Password of user %s changed through the guest agent', user,
             instance=instance)
    _save_for_metadata(instance, new_pass)


def _save_for_metadata(instance, new_pass):
    """With an RSA key pair, the password, encrypted with the key, for the
    metadata service (``nova get-password``), as Nova."""
    key = instance.key_data if 'key_data' in instance else None
    if key and key.startswith('ssh-rsa'):
        encrypted = crypto.ssh_encrypt_text(key, new_pass)
        instance.system_metadata.update(password.convert_password(
            None, base64.encode_as_text(encrypted)))
        instance.save()
