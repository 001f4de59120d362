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

"""The secret an emulated TPM's state is encrypted with, handled as Nova's
libvirt driver handles it (``_get_or_create_secret_for_vtpm``,
``_create_guest``): a passphrase in the key manager (castellan, through
Nova's ``nova.vtpm`` and ``nova.crypto``), whose UUID the instance keeps
in its system metadata (``vtpm_secret_uuid``), and a libvirt secret of
that passphrase while libvirt starts swtpm. With ``hw:tpm_secret_security``
``user`` (the default) or ``deployment`` the libvirt secret is ephemeral,
private and undefined once the guest runs; with ``host`` it stays defined
(not private) until the server is deleted. Nova's compute manager deletes
the key manager's secret with the server.
"""

import contextlib

from nova import exception
from nova import vtpm as nova_vtpm
from oslo_log import log as logging

from nova_kvmx.guest import vtpm as guest_vtpm

LOG = logging.getLogger(__name__)


def wanted(instance, image_meta=None):
    """The instance's guest has an emulated TPM (by default, as its image
    properties are kept with the instance)."""
    if image_meta is None:
        if not instance.obj_attr_is_set('system_metadata'):
            return False
        image_meta = instance.image_meta
    return guest_vtpm.requested(instance.flavor, image_meta) is not None


def ensure(context, instance, image_meta, settings):
    """Before the domain is rendered: the instance's passphrase in the key
    manager, made the first time (its UUID saved with the instance). None
    on a host without emulated TPMs (``settings.tpm_versions``), where the
    plan refuses the guest."""
    if settings.tpm_versions and wanted(instance, image_meta):
        nova_vtpm.get_or_create_secret(context, instance)


@contextlib.contextmanager
def defined(host, context, instance):
    """The libvirt secret defined while the guest starts (inside the
    ``with``): libvirt hands it to swtpm."""
    if context is None or not wanted(instance):
        yield
        return
    security = nova_vtpm.get_instance_tpm_secret_security(instance.flavor)
    secret = None
    kwargs = {}
    if security == 'host':
        secret = host.find_secret('vtpm', instance.uuid)
        kwargs = {'ephemeral': False, 'private': False}
    if secret is None:
        uuid, passphrase = nova_vtpm.get_or_create_secret(context, instance)
        secret = host.create_secret('vtpm', instance.uuid,
                                    password=passphrase, uuid=uuid, **kwargs)
    try:
        yield
    finally:
        if security != 'host':
            secret.undefine()


def remove(host, instance):
    """The instance's libvirt secret, if one stayed ('host' security)."""
    host.delete_secret('vtpm', instance.uuid)


def refuse_move(instance):
    """The emulated TPM's state (swtpm's, in libvirt's directory) does not
    move with the guest yet: a migration is refused before anything is
    stopped."""
    if wanted(instance):
        raise exception.MigrationPreCheckError(
            reason='moving a guest with an emulated TPM (hw:tpm_version) '
                   'is not supported by nova-kvmx yet')
