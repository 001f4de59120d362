#!/bin/bash
# plugin.sh - DevStack plugin of nova-kvmx
#
# Installs the nova-kvmx compute driver on nodes that run nova-compute (n-cpu)
# and points Nova at it (compute_driver = kvmx.KVMXDriver). Variables and
# their defaults are in devstack/settings.
#
# Keep VIRT_DRIVER at its default (libvirt): DevStack then installs and
# starts libvirtd, adds the stack user to the libvirt group and runs
# nova-compute in that group, all of which this driver needs too. This plugin
# then replaces the compute driver in post-config.

# Save trace setting
_XTRACE_NOVA_KVMX=$(set +o | grep xtrace)
set +o xtrace


# install_nova_kvmx - system packages and the Python package
function install_nova_kvmx {
    # shellcheck disable=SC2086 # a list of package names, split on purpose
    install_package $NOVA_KVMX_PACKAGES
    # A regular (non-editable) install with DevStack's constraints handling:
    # an editable install would map the top-level ``nova`` package to this
    # tree (for nova/virt/kvmx.py) and shadow Nova itself.
    setup_install "$NOVA_KVMX_DIR"
}

# _nova_kvmx_set_list section option list - a multi-valued option of
# $NOVA_CONF from a ";"-separated list, one "option = value" line per entry,
# in order. DevStack's iniset_multiline splits values on spaces (which JSON
# has), so the lines are added verbatim with iniadd_literal, which inserts
# after the section header: hence the reverse order. iniset then inidelete
# make sure the section exists and the option starts empty.
function _nova_kvmx_set_list {
    local section=$1
    local option=$2
    local entries i
    IFS=';' read -r -a entries <<< "$3"
    iniset "$NOVA_CONF" "$section" "$option" placeholder
    inidelete "$NOVA_CONF" "$section" "$option"
    for (( i=${#entries[@]}-1; i>=0; i-- )); do
        # Trim the spaces around each entry.
        entries[i]="${entries[i]#"${entries[i]%%[![:space:]]*}"}"
        entries[i]="${entries[i]%"${entries[i]##*[![:space:]]}"}"
        if [[ -n "${entries[i]}" ]]; then
            iniadd_literal "$NOVA_CONF" "$section" "$option" "${entries[i]}"
        fi
    done
}

# configure_nova_kvmx - point nova-compute at the driver
#
# The options go to $NOVA_CONF, not $NOVA_CPU_CONF: DevStack's
# start_nova_compute builds $NOVA_CPU_CONF later, by copying $NOVA_CONF and
# merging local.conf's post-config sections for $NOVA_CPU_CONF into it, so
# anything written to $NOVA_CPU_CONF here would be lost. Sections for
# $NOVA_CONF or $NOVA_CPU_CONF in local.conf still override these values.
function configure_nova_kvmx {
    iniset "$NOVA_CONF" DEFAULT compute_driver kvmx.KVMXDriver
    iniset "$NOVA_CONF" libvirt virt_type "$NOVA_KVMX_VIRT_TYPE"
    iniset "$NOVA_CONF" libvirt connection_uri "$NOVA_KVMX_CONNECTION_URI"
    if [[ -n "$NOVA_KVMX_CPU_DEDICATED_SET" ]]; then
        iniset "$NOVA_CONF" compute cpu_dedicated_set \
            "$NOVA_KVMX_CPU_DEDICATED_SET"
    fi
    if [[ -n "$NOVA_KVMX_CPU_SHARED_SET" ]]; then
        iniset "$NOVA_CONF" compute cpu_shared_set "$NOVA_KVMX_CPU_SHARED_SET"
    fi
    if [[ -n "$NOVA_KVMX_RESERVED_HUGE_PAGES" ]]; then
        _nova_kvmx_set_list DEFAULT reserved_huge_pages \
            "$NOVA_KVMX_RESERVED_HUGE_PAGES"
    fi
    if [[ -n "$NOVA_KVMX_PCI_DEVICE_SPEC" ]]; then
        _nova_kvmx_set_list pci device_spec "$NOVA_KVMX_PCI_DEVICE_SPEC"
    fi
}

# configure_nova_kvmx_pci_alias - [pci] alias, which nova-api reads to turn
# a flavor's pci_passthrough:alias into PCI requests and nova-compute to
# claim them
function configure_nova_kvmx_pci_alias {
    if [[ -n "$NOVA_KVMX_PCI_ALIAS" ]]; then
        _nova_kvmx_set_list pci alias "$NOVA_KVMX_PCI_ALIAS"
    fi
}

# _nova_kvmx_sriov_alias - the alias of the SR-IOV example flavor:
# $NOVA_KVMX_SRIOV_ALIAS, or the "name" of the first alias entry
function _nova_kvmx_sriov_alias {
    local name_re='"name"[[:space:]]*:[[:space:]]*"([^"]+)"'
    if [[ -n "$NOVA_KVMX_SRIOV_ALIAS" ]]; then
        echo "$NOVA_KVMX_SRIOV_ALIAS"
    elif [[ "$NOVA_KVMX_PCI_ALIAS" =~ $name_re ]]; then
        echo "${BASH_REMATCH[1]}"
    fi
}

# _nova_kvmx_flavor name vcpus ram property... - create a flavor unless one
# of that name exists (a re-stack, or the operator's own)
function _nova_kvmx_flavor {
    local name=$1
    local vcpus=$2
    local ram=$3
    shift 3
    local properties=()
    local property
    for property in "$@"; do
        properties+=(--property "$property")
    done
    if openstack --os-region-name="$REGION_NAME" flavor show "$name" \
            > /dev/null 2>&1; then
        return 0
    fi
    openstack --os-region-name="$REGION_NAME" flavor create --vcpus "$vcpus" \
        --ram "$ram" --disk 1 "${properties[@]}" "$name"
}

# create_nova_kvmx_flavors - example NFV flavors: pinned CPUs (needs
# NOVA_KVMX_CPU_DEDICATED_SET), realtime (pinned, huge pages, vCPU 0 left
# for the guest's housekeeping), huge pages, and a PCI device by alias.
# `nova-kvmx explain` tells whether and how each fits a host.
function create_nova_kvmx_flavors {
    _nova_kvmx_flavor kvmx.pinned 2 1024 hw:cpu_policy=dedicated
    _nova_kvmx_flavor kvmx.realtime 2 1024 hw:cpu_policy=dedicated \
        hw:cpu_realtime=yes hw:cpu_realtime_mask=^0 \
        hw:emulator_threads_policy=share hw:mem_page_size=large
    _nova_kvmx_flavor kvmx.hugepage 2 1024 hw:mem_page_size=large
    local alias
    alias=$(_nova_kvmx_sriov_alias)
    if [[ -n "$alias" ]]; then
        _nova_kvmx_flavor kvmx.sriov 2 1024 "pci_passthrough:alias=$alias:1"
    fi
}


if is_service_enabled n-cpu; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        if [[ "$VIRT_DRIVER" != "libvirt" ]]; then
            warn $LINENO "nova-kvmx expects VIRT_DRIVER=libvirt (the" \
                "default), which sets up libvirtd for nova-compute;" \
                "VIRT_DRIVER is '$VIRT_DRIVER'"
        fi
        echo_summary "Installing nova-kvmx"
        install_nova_kvmx

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-kvmx"
        configure_nova_kvmx
    fi

    if [[ "$1" == "unstack" ]]; then
        # Nothing to stop: DevStack's unstack stops nova-compute, and the
        # guests are left running, as with Nova's libvirt driver.
        :
    fi

    if [[ "$1" == "clean" ]]; then
        # Nothing to remove yet: DevStack's cleanup_nova destroys the
        # instance-* domains (ours are named after instance.name, like the
        # libvirt driver's) and empties the instances path; the options
        # written above go with /etc/nova.
        :
    fi
fi

if is_service_enabled n-cpu n-api; then
    if [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        configure_nova_kvmx_pci_alias
    fi
fi

if is_service_enabled n-api; then
    if [[ "$1" == "stack" && "$2" == "extra" &&
          "$NOVA_KVMX_CREATE_FLAVORS" == "True" ]]; then
        echo_summary "Creating nova-kvmx example NFV flavors"
        create_nova_kvmx_flavors
    fi
fi

# Restore xtrace
$_XTRACE_NOVA_KVMX
