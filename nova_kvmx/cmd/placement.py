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

"""What ``GET /allocation_candidates`` would find missing on a host.

Placement's rule for each resource class of the query: the amount fits
when ``used + amount <= (total - reserved) * allocation_ratio`` and
``amount <= max_unit``; required traits must be on the provider,
forbidden ones not.
"""

from nova_kvmx.cmd import usage as host_usage

_NO_INVENTORY = {'PCPU': ' (no [compute] cpu_dedicated_set)',
                 'VCPU': ' (no [compute] cpu_shared_set CPUs)'}


def capacity(record):
    return int((record['total'] - record['reserved']) *
               record['allocation_ratio'])


def _holders(consumers, rc):
    return {c.name: c.resources[rc] for c in consumers
            if c.resources.get(rc)}


def problems(ask, inventory, used, traits, consumers=()):
    """(problems, not checked): lines on what Placement would refuse, and
    what it cannot judge here (traits not managed by the driver, or all of
    them when the host's traits are unknown)."""
    found, unchecked = [], []
    for rc, amount in sorted(ask.resources.items()):
        record = inventory.get(rc)
        if rc == 'DISK_GB' and record is None:
            unchecked.append('DISK_GB (the host dump has no disk size)')
            continue
        if record is None:
            found.append('%s: needs %d, the host has no %s inventory%s' % (
                rc, amount, rc, _NO_INVENTORY.get(rc, '')))
            continue
        total = capacity(record)
        taken = used.get(rc, 0)
        if amount > total:
            found.append('%s: needs %d, the host offers %d' % (
                rc, amount, total))
        elif amount > record['max_unit']:
            found.append('%s: needs %d, at most %d per server (max_unit)'
                         % (rc, amount, record['max_unit']))
        elif taken + amount > total:
            found.append('%s: needs %d, %d free of %d (%d used %s)' % (
                rc, amount, max(total - taken, 0), total, taken,
                host_usage.by_whom(taken, _holders(consumers, rc))))
    if traits is None:
        if ask.required_traits or ask.forbidden_traits:
            unchecked.append('traits (the host\'s are in Placement)')
    else:
        for trait in ask.required_traits:
            if trait not in traits:
                unchecked.append(trait)
            elif not traits[trait]:
                found.append('requires trait %s, which the host lacks'
                             % trait)
        for trait in ask.forbidden_traits:
            if traits.get(trait):
                found.append('forbids trait %s, which the host has%s' % (
                    trait, ' (its CPUs have SMT threads)'
                    if trait == 'HW_CPU_HYPERTHREADING' else ''))
    for any_of in ask.any_of_traits:
        unchecked.append('one of ' + ','.join(any_of))
    return found, unchecked
