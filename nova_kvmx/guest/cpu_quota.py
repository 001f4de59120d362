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

"""Flavor CPU shares and quotas -> :class:`spec.CPUQuota`.

Nova's API checks ``quota:cpu_shares``, ``quota:cpu_period`` and
``quota:cpu_quota`` only as integers (shares and period not negative);
libvirt takes narrower ranges and would refuse the domain with a message
about its XML. Here each value keeps the meaning Nova documents for it in
the form libvirt's schema takes, or is refused with an error naming the
extra spec.

Pure: the flavor and the host's settings in, a CPUQuota out.
"""

from nova import exception as nova_exception

from nova_kvmx import exception
from nova_kvmx.guest import spec

PREFIX = 'quota:cpu_'
NAMES = ('shares', 'period', 'quota')
# The ranges of libvirt's domain schema (cpushares, cpuperiod, cpuquota);
# the largest quota is also the kernel's largest CFS quota (2^44 - 1 us).
MAX_SHARES = 2 ** 32 - 1
MIN_PERIOD, MAX_PERIOD = 1000, 1000000
MIN_QUOTA, MAX_QUOTA = 1000, 2 ** 44 - 1


def plan_cpu_quota(flavor, settings):
    """The flavor's CPU shares and quota, None when it asks for neither.

    :param settings: spec.DriverSettings of this host
    :raises: UnsupportedHostCPUControlPolicy, as Nova's libvirt driver,
        when the host has no usable cgroup CPU controller; InvalidCPUQuota
        for a value libvirt cannot take
    """
    specs = flavor.extra_specs
    wanted = {name: specs[PREFIX + name] for name in NAMES
              if PREFIX + name in specs}
    if not wanted:
        return None
    if not settings.cpu_control:
        raise nova_exception.UnsupportedHostCPUControlPolicy()
    values = {name: _VALUES[name](name, _integer(name, text))
              for name, text in wanted.items()}
    if not any(value is not None for value in values.values()):
        return None
    return spec.CPUQuota(**values)


def _integer(name, text):
    try:
        return int(text)
    except (TypeError, ValueError):
        _refuse(name, text, 'it is not an integer')


def _refuse(name, value, reason):
    raise exception.InvalidCPUQuota(key=PREFIX + name, value=value,
                                    reason=reason)


def _shares(name, value):
    if not 0 <= value <= MAX_SHARES:
        _refuse(name, value, 'libvirt takes 0 to %d' % MAX_SHARES)
    return value


def _period(name, value):
    # 0 is "no value" (Nova's extra spec documentation; libvirt alike).
    if value == 0:
        return None
    if not MIN_PERIOD <= value <= MAX_PERIOD:
        _refuse(name, value, 'libvirt takes %d to %d microseconds, or 0 '
                'for the host\'s default' % (MIN_PERIOD, MAX_PERIOD))
    return value


def _quota(name, value):
    # Negative is "no limit" (Nova's documentation), which libvirt's schema
    # spells -1; 0 is "no value" to libvirt.
    if value < 0:
        return -1
    if value == 0:
        return None
    if not MIN_QUOTA <= value <= MAX_QUOTA:
        _refuse(name, value, 'libvirt takes %d to %d microseconds, or a '
                'negative value for no limit' % (MIN_QUOTA, MAX_QUOTA))
    return value


_VALUES = {'shares': _shares, 'period': _period, 'quota': _quota}
