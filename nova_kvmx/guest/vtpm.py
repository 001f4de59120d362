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

"""The guest's emulated TPM (``hw:tpm_version``, ``hw:tpm_model`` and
their image properties), as Nova's libvirt driver adds it
(``LibvirtDriver._add_vtpm_device``): a ``<tpm>`` with an ``emulator``
(swtpm) back end whose state libvirt encrypts with the instance's vTPM
secret, a libvirt secret of the key manager's passphrase
(:mod:`nova_kvmx.vtpm_secret`).

Pure: Nova objects and plain values in, :class:`VTPM` out; VTPM in, a
config object out.
"""

import dataclasses

from nova import exception
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig

from nova_kvmx import exception as kvmx_exception

# The system metadata key Nova keeps the instance's vTPM secret under.
SECRET_KEY = 'vtpm_secret_uuid'


@dataclasses.dataclass(frozen=True)
class VTPM:
    version: str
    model: str
    secret_uuid: str


def requested(flavor, image_meta):
    """Nova's vTPM request of a flavor and image (hardware.VTPMConfig),
    None for none.

    :raises: Nova's Invalid, FlavorImageConflict for a bad request
    """
    return hardware.get_vtpm_constraint(flavor, image_meta)


def plan_vtpm(instance, image_meta, settings):
    """The guest's :class:`VTPM`, None for none.

    :param instance: nova.objects.Instance (its flavor, and the secret's
        UUID in its system metadata)
    :param settings: spec.DriverSettings (``tpm_versions``,
        ``tpm_models`` and ``tpm_secret_security`` this host gives
        guests, empty without ``[libvirt] swtpm_enabled``)
    :raises: UnsupportedKey naming the key the host cannot realise;
        Nova's Invalid for a request Nova refuses, or a guest whose
        secret was not made
    """
    flavor = instance.flavor
    config = requested(flavor, image_meta)
    if config is None:
        return None
    for key, value, offered in (
            ('tpm_version', config.version, settings.tpm_versions),
            ('tpm_model', config.model, settings.tpm_models)):
        if value not in offered:
            raise _unsupported(flavor, image_meta, key, value, offered)
    security = hardware.get_tpm_secret_security_constraint(flavor)
    if security and security not in settings.tpm_secret_security:
        raise kvmx_exception.UnsupportedKey(
            kind='flavor extra spec', key='hw:tpm_secret_security',
            value=security, reason='this host offers %s ([libvirt] '
            'supported_tpm_secret_security)' % (
                ', '.join(settings.tpm_secret_security) or 'none'))
    secret_uuid = instance.system_metadata.get(SECRET_KEY)
    if not secret_uuid:
        raise exception.Invalid(
            'Refusing to create an emulated TPM with no secret!')
    return VTPM(version=config.version, model=config.model,
                secret_uuid=secret_uuid)


def _unsupported(flavor, image_meta, key, value, offered):
    if 'hw:' + key in flavor.extra_specs:
        kind, name = 'flavor extra spec', 'hw:' + key
    else:
        kind, name = 'image property', 'hw_' + key
    if offered:
        reason = 'this host offers %s' % ', '.join(offered)
    else:
        reason = ('this host gives guests no emulated TPM ([libvirt] '
                  'swtpm_enabled is False)')
    return kvmx_exception.UnsupportedKey(kind=kind, key=name, value=value,
                                         reason=reason)


def build_vtpm(vtpm):
    """The ``<tpm>`` device of a :class:`VTPM` (Nova's config class)."""
    return vconfig.LibvirtConfigGuestVTPM(
        hardware.VTPMConfig(vtpm.version, vtpm.model), vtpm.secret_uuid)
