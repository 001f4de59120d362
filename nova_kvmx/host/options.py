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

"""Nova's ``[libvirt]`` options for the libvirt connection and the guests'
domain type, CPU and machine, read and checked against this host's
libvirt when nova-compute starts.

An operator coming from Nova's libvirt driver keeps its nova.conf: Nova's
option wins when it is set; the older ``[kvmx]`` twins are read only when
Nova's is not. A value the host cannot realise stops nova-compute with an
error naming the option (Nova's ``_check_cpu_compatibility`` and more),
rather than failing every spawn later.
"""

import libvirt
from lxml import etree
from nova.virt.libvirt import config as vconfig
from oslo_config import cfg

from nova_kvmx import exception
from nova_kvmx.guest import cpu_model
from nova_kvmx.guest import planner

# The architectures whose CPU model names libvirt knows (Nova maps only
# these case-insensitively; others pass through as written).
_NAMED_MODEL_ARCHES = ('i686', 'x86_64', 'ppc64', 'ppc64le', 'ppc')
# The machine type of a guest when [libvirt] hw_machine_type does not name
# the host's architecture and [kvmx] machine_type is not set.
DEFAULT_MACHINE_TYPE = 'q35'
# The domain types nova-kvmx runs; Nova's [libvirt] virt_type also offers
# lxc and parallels, which are other drivers' business.
SUPPORTED_VIRT_TYPES = ('kvm', 'qemu')


def _cpu_group(conf):
    """``libvirt`` when Nova's ``cpu_mode`` or ``cpu_models`` is set (the
    two are read together), else the deprecated ``kvmx`` twins."""
    if conf.libvirt.cpu_mode is not None or conf.libvirt.cpu_models:
        return 'libvirt'
    return 'kvmx'


def _user_set(conf, name, group):
    return (conf.get_location(name, group).location !=
            cfg.Locations.opt_default)


def virt_type(conf):
    """``[libvirt] virt_type``; the deprecated ``[kvmx]`` one only while
    Nova's is left at its default (both default to kvm). lxc and
    parallels are refused by name."""
    value = conf.libvirt.virt_type
    if value == 'kvm':
        return conf.kvmx.virt_type
    if value not in SUPPORTED_VIRT_TYPES:
        raise exception.UnsupportedOption(
            option='[libvirt] virt_type', value=value,
            reason='it runs %s guests only' % ' and '.join(
                SUPPORTED_VIRT_TYPES))
    return value


def connection_uri(conf):
    """``[libvirt] connection_uri`` when set; Nova's empty default means
    the local system libvirtd for kvm and qemu, which is also the default
    of the deprecated ``[kvmx]`` twin read in its place."""
    return conf.libvirt.connection_uri or conf.kvmx.connection_uri


def realtime_priority(conf):
    """``[libvirt] realtime_scheduler_priority``, unless only the
    deprecated ``[kvmx]`` one is set; SCHED_FIFO takes 1-99."""
    if (_user_set(conf, 'realtime_scheduler_priority', 'kvmx') and
            not _user_set(conf, 'realtime_scheduler_priority', 'libvirt')):
        return conf.kvmx.realtime_scheduler_priority
    priority = conf.libvirt.realtime_scheduler_priority
    if not 1 <= priority <= 99:
        raise exception.InvalidOption(
            option='[libvirt] realtime_scheduler_priority', value=priority,
            reason='a SCHED_FIFO priority is 1 to 99')
    return priority


def default_machine_type(conf, arch):
    """The machine type of a guest whose image has no ``hw_machine_type``:
    the one ``[libvirt] hw_machine_type`` (``arch=machine,...``, Nova's
    syntax) names for ``arch``, else ``[kvmx] machine_type``, else q35
    (unlike Nova's ``pc``: q35 is what NFV guests need for PCI Express
    passthrough)."""
    chosen = None
    for mapping in conf.libvirt.hw_machine_type or ():
        host_arch, _, machine = mapping.strip().partition('=')
        if not host_arch or not machine or not planner.MACHINE_TYPE.fullmatch(
                machine):
            raise exception.InvalidOption(
                option='[libvirt] hw_machine_type', value=mapping,
                reason='each entry is <architecture>=<machine type>, '
                       'e.g. x86_64=q35')
        if host_arch == arch and chosen is None:
            chosen = machine
    if chosen:
        return chosen
    machine = conf.kvmx.machine_type or DEFAULT_MACHINE_TYPE
    if not planner.MACHINE_TYPE.fullmatch(machine):
        raise exception.InvalidOption(
            option='[kvmx] machine_type', value=machine,
            reason="a machine type is letters, digits, '_', '.' and '-'")
    return machine


def check_power_management(conf):
    """``[libvirt] cpu_power_management`` is refused: nova-kvmx does not
    take dedicated CPUs offline or change their governor, and a host that
    expects it would silently keep them powered."""
    if conf.libvirt.cpu_power_management:
        raise exception.UnsupportedOption(
            option='[libvirt] cpu_power_management', value=True,
            reason='powering dedicated CPUs down and up ([libvirt] '
                   'cpu_power_management_strategy=%s) is not implemented; '
                   'set it to False' %
                   conf.libvirt.cpu_power_management_strategy)


def configured_cpu(conf):
    """The guest CPU options as configured, unchecked:
    {cpu_mode, cpu_models, cpu_extra_flags}."""
    group = conf[_cpu_group(conf)]
    return dict(
        cpu_mode=group.cpu_mode, cpu_models=tuple(group.cpu_models),
        cpu_extra_flags=cpu_model.parse_extra_flags(
            conf.libvirt.cpu_model_extra_flags))


def cpu_settings(conf, host, virt_type, arch):
    """The DriverSettings fields of the guest CPU, checked with libvirt:
    :func:`configured_cpu`'s, the models as libvirt spells them, and
    ``cpu_model_features``.

    :raises: InvalidOption naming the option at fault
    """
    name = _cpu_group(conf)
    mode, models = conf[name].cpu_mode, conf[name].cpu_models
    mode_opt, models_opt = '[%s] cpu_mode' % name, '[%s] cpu_models' % name
    flags = cpu_model.parse_extra_flags(conf.libvirt.cpu_model_extra_flags)
    if mode == 'custom' and not models:
        raise exception.InvalidOption(
            option=mode_opt, value=mode,
            reason='cpu_mode=custom needs the CPU models in [libvirt] '
                   'cpu_models')
    if mode != 'custom' and models:
        raise exception.InvalidOption(
            option=models_opt, value=','.join(models),
            reason='CPU models are only for cpu_mode=custom (cpu_mode is '
                   '%s)' % (mode or 'unset'))
    if flags and cpu_model.default_mode(mode, virt_type) == 'none':
        raise exception.InvalidOption(
            option='[libvirt] cpu_model_extra_flags',
            value=','.join(conf.libvirt.cpu_model_extra_flags),
            reason='extra CPU flags need [libvirt] cpu_mode host-model, '
                   'host-passthrough or custom (the guests have the '
                   "hypervisor's default CPU)")
    models = tuple(_model_name(host, arch, m, models_opt) for m in models)
    _check_flags(host, arch, models or (host.get_capabilities().host.cpu
                                        .model or 'qemu64',), flags)
    if (virt_type == 'kvm' and models and
            not conf.workarounds.skip_cpu_compare_at_startup):
        for model in models:
            _compare(host, arch, model, flags, models_opt)
    return dict(cpu_mode=mode, cpu_models=models, cpu_extra_flags=flags,
                cpu_model_features=tuple(
                    (m, frozenset(_expanded(host, arch, m))) for m in models))


def _model_name(host, arch, model, option):
    """libvirt's spelling of ``model`` (Nova's option is case-insensitive);
    InvalidOption when libvirt does not know it for ``arch``."""
    if arch not in _NAMED_MODEL_ARCHES:
        return model
    names = {name.lower(): name for name in host.get_cpu_model_names()}
    if model.lower() not in names:
        raise exception.InvalidOption(
            option=option, value=model,
            reason='libvirt has no CPU model %s for %s guests (virsh '
                   'cpu-models %s lists them)' % (model, arch, arch))
    return names[model.lower()]


def _cpu_xml(arch, model, flags=()):
    cpu = vconfig.LibvirtConfigGuestCPU()
    cpu.arch = arch
    cpu.model = model
    for name, policy in flags:
        cpu.add_feature(vconfig.LibvirtConfigGuestCPUFeature(name, policy))
    return cpu.to_xml()


def _baseline(host, xml, flags=0):
    """libvirt's baseline of one CPU; None where libvirt cannot tell."""
    try:
        return host.get_connection().baselineCPU([xml], flags)
    except libvirt.libvirtError as ex:
        if ex.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return None
        raise


def _check_flags(host, arch, models, flags):
    """Every extra flag is a CPU feature libvirt knows (a typo would fail
    every spawn); libvirt names the unknown one."""
    if not flags:
        return
    for model in models:
        try:
            _baseline(host, _cpu_xml(arch, model, [
                (name, 'require') for name, _ in flags]))
        except libvirt.libvirtError as ex:
            raise exception.InvalidOption(
                option='[libvirt] cpu_model_extra_flags',
                value=','.join('%s%s' % ('-' if p == 'disable' else '+', n)
                               for n, p in flags),
                reason=ex.get_error_message())


def _expanded(host, arch, model):
    """The CPU features of a named model, as Nova's
    ``_get_guest_baseline_cpu_features`` expands them."""
    xml = _baseline(host, _cpu_xml(arch, model),
                    libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)
    if not xml:
        return set()
    return {f.get('name') for f in etree.fromstring(xml).iter('feature')
            if f.get('policy') != 'disable'}


def _compare(host, arch, model, flags, option):
    """Nova's start-up check under KVM: the model with the extra flags
    runs on this host's CPU."""
    try:
        result = host.compare_hypervisor_cpu(_cpu_xml(arch, model, flags))
    except libvirt.libvirtError as ex:
        if ex.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return
        result, detail = 0, ex.get_error_message()
    else:
        detail = 'libvirt compares it as %s' % result
    if result <= 0:
        raise exception.InvalidOption(
            option=option, value=model,
            reason='the model (with [libvirt] cpu_model_extra_flags) is not '
                   'compatible with this host CPU: %s' % detail)
