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

"""The emulated TPMs (swtpm) this host gives guests, as Nova's libvirt
driver decides it (``LibvirtDriver._check_vtpm_support``,
``_get_tpm_traits``): only with ``[libvirt] swtpm_enabled``, then from
libvirt's domain capabilities (an ``emulator`` TPM back end, its models
and versions); ``swtpm_user`` and ``swtpm_group`` must exist.
"""

import dataclasses
import grp
import pwd
import shutil

from nova import exception
import os_traits as ot

# The TPM secret security traits, by [libvirt] supported_tpm_secret_security
# value.
_SECURITY_TRAITS = {
    'user': ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER,
    'host': ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST,
    'deployment': ot.COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT,
}


@dataclasses.dataclass(frozen=True)
class TPMSupport:
    """What guests can have; empty when ``swtpm_enabled`` is off."""

    versions: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    secret_security: tuple[str, ...] = ()

    def __bool__(self):
        return bool(self.versions and self.models)


def tpm_support(conf, domcaps, virt_type):
    """The :class:`TPMSupport` of this host, from nova.conf's ``[libvirt]``
    options and libvirt's domain capabilities.

    :raises: Nova's InvalidConfiguration, as Nova's libvirt driver, when
        ``swtpm_enabled`` is set on a host that cannot have it
    """
    if not conf.libvirt.swtpm_enabled:
        return TPMSupport()
    if virt_type not in ('qemu', 'kvm'):
        raise exception.InvalidConfiguration(
            "vTPM support requires '[libvirt] virt_type' of 'qemu' or "
            "'kvm'; found '%s'." % virt_type)
    tpm = domcaps.devices.tpm
    if not (tpm and tpm.supported and 'emulator' in (
            tpm.backend_models or ())) or shutil.which('swtpm') is None:
        raise exception.InvalidConfiguration(
            "vTPM support is configured ([libvirt] swtpm_enabled) but "
            "libvirt cannot give guests an emulated TPM (install swtpm "
            "and swtpm-tools)")
    for option, lookup in (('swtpm_user', pwd.getpwnam),
                           ('swtpm_group', grp.getgrnam)):
        try:
            lookup(getattr(conf.libvirt, option))
        except KeyError:
            raise exception.InvalidConfiguration(
                "The %s configured in '[libvirt] %s' does not exist on "
                "this host; expected '%s'." % (
                    option[6:], option, getattr(conf.libvirt, option)))
    return TPMSupport(
        versions=tuple(tpm.backend_versions or ('1.2', '2.0')),
        models=tuple(tpm.models or ()),
        secret_security=tuple(
            s for s in conf.libvirt.supported_tpm_secret_security
            if s in _SECURITY_TRAITS))


def tpm_traits(support):
    """{trait: present} of the TPMs, as Nova's ``_get_tpm_traits``: every
    version and model trait is listed (False without swtpm_enabled), the
    secret security ones only when present."""
    traits = {
        ot.COMPUTE_SECURITY_TPM_1_2: '1.2' in support.versions,
        ot.COMPUTE_SECURITY_TPM_2_0: '2.0' in support.versions,
        ot.COMPUTE_SECURITY_TPM_TIS: 'tpm-tis' in support.models,
        ot.COMPUTE_SECURITY_TPM_CRB: 'tpm-crb' in support.models,
    }
    for security in support.secret_security:
        traits[_SECURITY_TRAITS[security]] = True
    return traits
