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

"""The guest CPU's mode, model and extra features, as Nova's libvirt
driver chooses them (``_get_guest_cpu_model_config``).

Pure: the host-wide settings and the flavor in, plain values out.
"""

from nova import exception
from nova.virt.libvirt import utils as libvirt_utils

# Modes whose guests see the host's CPU (its features become traits).
HOST_CPU_MODES = ('host-passthrough', 'host-model')


def parse_extra_flags(flags):
    """``[libvirt] cpu_model_extra_flags`` as ((name, policy), ...), in
    name order: ``-flag`` disables it, ``+flag`` or ``flag`` requires it;
    case-insensitive, as Nova reads them (the last of a repeated flag
    wins)."""
    features = {}
    for flag in flags:
        flag = flag.strip().lower()
        if flag.startswith('-'):
            features[flag[1:]] = 'disable'
        elif flag:
            features[flag.lstrip('+')] = 'require'
    return tuple(sorted(features.items()))


def default_mode(cpu_mode, virt_type):
    """The configured mode, else ``host-passthrough`` on KVM (what NFV
    wants) and none under TCG."""
    if cpu_mode:
        return cpu_mode
    return 'host-passthrough' if virt_type == 'kvm' else 'none'


def choose_model(flavor, settings):
    """The first of ``cpu_models`` that has every CPU feature the flavor
    requires as a trait (``trait:HW_CPU_X86_*=required``), as Nova's
    ``_match_cpu_model_by_flags``; the first model when it requires none.

    :raises: InvalidCPUInfo when no configured model has them all
    """
    models = settings.cpu_models
    if not models:
        raise exception.Invalid(
            '[libvirt] cpu_mode=custom needs [libvirt] cpu_models')
    wanted = libvirt_utils.get_flags_by_flavor_specs(flavor)
    if not wanted:
        return models[0]
    features = dict(settings.cpu_model_features)
    for model in models:
        if wanted <= features.get(model, frozenset()):
            return model
    raise exception.InvalidCPUInfo(
        reason='no CPU model of [libvirt] cpu_models (%s) has the CPU '
               'features the flavor requires as traits (%s)' % (
                   ', '.join(models), ', '.join(sorted(wanted))))


def plan_model(flavor, settings):
    """(mode, model, features) of the guest CPU; mode None for ``none``
    (the hypervisor's default CPU, without extra features, as Nova)."""
    mode = default_mode(settings.cpu_mode, settings.virt_type)
    if mode == 'none':
        return None, None, ()
    model = choose_model(flavor, settings) if mode == 'custom' else None
    return mode, model, settings.cpu_extra_flags


def guest_features(host_features, settings):
    """The CPU features guests of this host see, for the CPU feature
    traits: the host's under host-passthrough and host-model, the union
    of the models' under custom (a flavor's required traits pick the
    model, as :func:`choose_model`), none otherwise; then the extra flags
    applied. Unlike Nova, a disabled flag's trait is not reported: no
    guest has that feature."""
    mode = default_mode(settings.cpu_mode, settings.virt_type)
    if mode in HOST_CPU_MODES:
        features = set(host_features)
    elif mode == 'custom':
        features = set().union(*(f for _, f in settings.cpu_model_features))
    else:
        return set()
    for name, policy in settings.cpu_extra_flags:
        if policy == 'require':
            features.add(name)
        else:
            features.discard(name)
    return features
