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

"""The consoles of a guest: its serial ports and its graphical consoles.

As Nova's libvirt driver makes them (``_create_consoles``,
``_create_serial_consoles``, ``_guest_add_spice_channel``,
``_guest_add_video_device``): one serial port logged to the console log,
a pty without ``[serial_console] enabled`` and with it TCP ports a serial
proxy connects to (``hw:serial_port_count`` of them, the first logged);
VNC and SPICE graphics with ``[vnc] enabled`` and ``[spice] enabled``,
and the SPICE agent's channel with ``[spice] agent_enabled``.

Pure: the ports come acquired (nova_kvmx.console), CONF comes as
:class:`Spice` and the listen addresses of the DriverSettings.
"""

import dataclasses

from nova import exception
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig

# Nova's libvirt driver's ALLOWED_QEMU_SERIAL_PORTS: QEMU has 4 ISA serial
# ports, one of which Nova leaves to QEMU.
MAX_SERIAL_PORTS = 3

# The virtio-serial port the SPICE agent in the guest listens on.
SPICE_AGENT_CHANNEL = 'com.redhat.spice.0'


@dataclasses.dataclass(frozen=True)
class Spice:
    """SPICE graphics as ``[spice]`` configures them."""

    listen: str
    # The agent's channel (copy and paste, mouse, screen size).
    agent: bool = True
    image_compression: str | None = None
    jpeg_compression: str | None = None
    zlib_compression: str | None = None
    playback_compression: bool | None = None
    streaming_mode: str | None = None
    # Every channel over TLS only ([spice] require_secure).
    secure: bool = False


def spice_from_conf(conf):
    """:class:`Spice` of ``[spice]``, None when it is not enabled."""
    spice = conf.spice
    if not spice.enabled:
        return None
    return Spice(listen=spice.server_listen, agent=spice.agent_enabled,
                 image_compression=spice.image_compression,
                 jpeg_compression=spice.jpeg_compression,
                 zlib_compression=spice.zlib_compression,
                 playback_compression=spice.playback_compression,
                 streaming_mode=spice.streaming_mode,
                 secure=spice.require_secure)


def serial_port_count(flavor, image_meta, settings):
    """How many TCP serial ports the guest gets: 0 without the serial
    console (its one logged pty), else ``hw:serial_port_count`` /
    ``hw_serial_port_count`` (1 by default) as Nova's libvirt driver
    counts and checks them.

    :raises: Nova's ImageSerialPortNumberInvalid,
        ImageSerialPortNumberExceedFlavorValue, SerialPortNumberLimitExceeded
    """
    if settings.serial_listen is None:
        return 0
    count = hardware.get_number_of_serial_ports(flavor, image_meta)
    if count > MAX_SERIAL_PORTS:
        raise exception.SerialPortNumberLimitExceeded(
            allowed=MAX_SERIAL_PORTS, virt_type=settings.virt_type)
    return count


def has_graphics(vnc_listen, spice):
    """A guest with a graphical console has a video device, pointer and
    keyboard."""
    return vnc_listen is not None or spice is not None


def spice_agent_points(vnc_listen, spice):
    """The SPICE agent's channel carries the mouse, so Nova's libvirt
    driver adds no default USB tablet -- unless VNC needs it too."""
    return spice is not None and spice.agent and vnc_listen is None


def build_graphics(vnc_listen, spice):
    """The SPICE agent's channel, the VNC and SPICE graphics and, with
    either, the video device."""
    devices = []
    if spice is not None and spice.agent:
        channel = vconfig.LibvirtConfigGuestChannel()
        channel.type = 'spicevmc'
        channel.target_name = SPICE_AGENT_CHANNEL
        devices.append(channel)
    if vnc_listen is not None:
        graphics = vconfig.LibvirtConfigGuestGraphics()
        graphics.type = 'vnc'
        graphics.listen = vnc_listen
        devices.append(graphics)
    if spice is not None:
        devices.append(build_spice(spice))
    if has_graphics(vnc_listen, spice):
        devices.append(vconfig.LibvirtConfigGuestVideo())
    return devices


def build_serials(log_path, listen, ports):
    """The serial ports: TCP servers on ``listen`` at ``ports``, else one
    pty (with the console that points at it); the first port's output is
    what virtlogd keeps in ``log_path`` (the console log API reads it)."""
    log = vconfig.LibvirtConfigGuestCharDeviceLog()
    log.file = log_path
    log.append = 'on'
    if not ports:
        serial = vconfig.LibvirtConfigGuestSerial()
        serial.type = 'pty'
        serial.log = log
        console = vconfig.LibvirtConfigGuestConsole()
        console.type = 'pty'
        return [serial, console]
    serials = []
    for index, port in enumerate(ports):
        serial = vconfig.LibvirtConfigGuestSerial()
        serial.type = 'tcp'
        serial.listen_host = listen
        serial.listen_port = port
        serial.target_port = index
        # Only the first port gets the kernel's boot messages.
        serial.log = log if index == 0 else None
        serials.append(serial)
    # libvirt adds the console that mirrors the first serial port.
    return serials


def build_spice(spice):
    graphics = vconfig.LibvirtConfigGuestGraphics()
    graphics.type = 'spice'
    graphics.listen = spice.listen
    graphics.image_compression = spice.image_compression
    graphics.jpeg_compression = spice.jpeg_compression
    graphics.zlib_compression = spice.zlib_compression
    graphics.playback_compression = spice.playback_compression
    graphics.streaming_mode = spice.streaming_mode
    graphics.secure = spice.secure
    return graphics
