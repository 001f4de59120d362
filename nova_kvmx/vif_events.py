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

"""Neutron's ``network-vif-plugged`` events: a guest runs only once its
ports are wired.

Neutron's agent wires a port (OVS flows, security groups) only after the
port's device shows up on the host, then tells Nova with a
``network-vif-plugged`` event. A guest that runs before then can send its
first DHCP request into nothing. So, as Nova's libvirt driver does, the
driver registers for the events it expects, plugs the ports, starts the
domain paused, waits (``[DEFAULT] vif_plugging_timeout``) and only then
resumes the guest.

Which events a start expects is Nova's rule for the operation, kept here
as pure functions of the ports and options:

- a first plug (spawn, finish_revert_migration): every port Nova's cache
  shows not yet up (``active`` False), except ``remote-managed`` ones
  (their backend is a SmartNIC's, not this host's);
- a hard reboot or power on: every port whose vnic_type is in ``[workarounds]
  wait_for_vif_plugged_event_during_hard_reboot`` (none by default: Nova's
  cache is stale then and some backends send no event for a re-plug);
- finish_migration, and restarting the source after a failed move: none
  (the ports were unplugged on this host moments before, which Neutron
  may never notice, so it may send nothing); resume, rescue and unrescue:
  none either.

Nothing is waited for unless ``vif_plugging_timeout`` is set, the guest is
KVM or QEMU and it is to run. Live migration needs nothing from here: the
compute manager waits itself after the destination's pre_live_migration
plugged the ports (``migrate_data.wait_for_vif_plugged``).
"""

import contextlib

import nova.conf
from nova import exception as nova_exception
from nova.network import model as network_model
from oslo_log import log as logging

from nova_kvmx import exception

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

PLUGGED = 'network-vif-plugged'
# The guest types whose starts Nova's libvirt driver holds for the events.
WAITING_VIRT_TYPES = ('kvm', 'qemu')


def plug_events(network_info):
    """The events a first plug of ``network_info`` brings (Nova's
    ``_get_neutron_events``): ports known to be down. A port whose
    ``active`` is missing may be a stale cache entry: taken as up, so a
    start never blocks on an event that will not come."""
    return [(PLUGGED, vif['id']) for vif in network_info or ()
            if vif.get('active', True) is False and
            vif.get('vnic_type') != network_model.VNIC_TYPE_REMOTE_MANAGED]


def hard_reboot_events(network_info, vnic_types):
    """The events a hard reboot or power on waits for: every port of one
    of ``vnic_types`` (``[workarounds]
    wait_for_vif_plugged_event_during_hard_reboot``), up or not, since all
    of them are unplugged and plugged again."""
    return [(PLUGGED, vif['id']) for vif in network_info or ()
            if vif.get('vnic_type') in (vnic_types or ())]


def expected(events, virt_type, timeout, power_on=True):
    """``events``, if this start waits at all: not with a timeout of 0
    (the operator's "Neutron sends no events"), not for a guest that is
    only defined, and only for KVM and QEMU guests (as Nova)."""
    if virt_type in WAITING_VIRT_TYPES and timeout and power_on:
        return list(events)
    return []


def for_plug(network_info, virt_type, power_on=True):
    """What a spawn or a reverted move waits for, under nova.conf."""
    return expected(plug_events(network_info), virt_type,
                    CONF.vif_plugging_timeout, power_on)


def for_hard_reboot(network_info, virt_type):
    """What a hard reboot or power on waits for, under nova.conf."""
    return expected(
        hard_reboot_events(
            network_info,
            CONF.workarounds.wait_for_vif_plugged_event_during_hard_reboot),
        virt_type, CONF.vif_plugging_timeout)


def port_ids(events):
    return ', '.join(tag for _name, tag in events)


@contextlib.contextmanager
def waiting(virtapi, instance, events):
    """Register for ``events``, run the body (which plugs the ports and
    starts the guest paused), then wait for them all within ``[DEFAULT]
    vif_plugging_timeout`` seconds.

    :raises VIFPlugTimedOut: not all arrived in time and ``[DEFAULT]
        vif_plugging_is_fatal`` (else a warning, and the start goes on)
    :raises VIFPlugReportedFailed: Neutron reported a port failed and
        ``vif_plugging_is_fatal``
    """
    if not events:
        yield
        return
    fatal = CONF.vif_plugging_is_fatal
    timeout = CONF.vif_plugging_timeout

    def failed(event_name, instance):
        port_id = event_name[len(PLUGGED) + 1:]
        LOG.error('Neutron reported a failure plugging port %s', port_id,
                  instance=instance)
        if fatal:
            raise exception.VIFPlugReportedFailed(port_id=port_id)
        # Not fatal: go on waiting for the other ports.

    LOG.debug('Waiting up to %d seconds for Neutron to report port(s) %s '
              'plugged', timeout, port_ids(events), instance=instance)
    try:
        with virtapi.wait_for_instance_event(instance, events,
                                             timeout=timeout,
                                             error_callback=failed):
            yield
    except nova_exception.InstanceEventTimeout:
        if fatal:
            raise exception.VIFPlugTimedOut(ports=port_ids(events),
                                            timeout=timeout)
        LOG.warning('Neutron did not report port(s) %s plugged within %d '
                    'seconds; the guest runs anyway ([DEFAULT] '
                    'vif_plugging_is_fatal = False)', port_ids(events),
                    timeout, instance=instance)
