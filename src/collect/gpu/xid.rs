//! What an XID means, in the words dcgm-exporter 3.3 puts in the `err_msg` label of
//! `DCGM_FI_DEV_XID_ERRORS` (NVIDIA's XID catalogue, as that release knew it), so
//! alerts and dashboards that read `err_msg` see the same text.

/// The `err_msg` of XID `xid`: "Unknown Error" past the catalogue's end.
pub fn description(xid: u64) -> &'static str {
    match xid {
        0 => "No Error",
        1..=4 | 6 | 11 | 32 => "Invalid or corrupted push buffer stream",
        5 | 10 | 14 | 15 | 17 | 23 | 39..=41 | 49..=53 | 55 => "Unused",
        7 => "Invalid or corrupted push buffer address",
        8 | 43 | 46 => "GPU stopped processing",
        9 => "Driver error programming GPU",
        12 => "Driver error handling GPU exception",
        13 => "Graphics Engine Exception",
        16 => "Display engine hung",
        18 => "Bus mastering disabled in PCI Config Space",
        19 | 56 => "Display Engine error",
        20 => "Invalid or corrupted Mpeg push buffer",
        21 => "Invalid or corrupted Motion Estimation push buffer",
        22 => "Invalid or corrupted Video Processor push buffer",
        24 => "GPU semaphore timeout",
        25 => "Invalid or illegal push buffer stream",
        26 => "Framebuffer timeout",
        27..=29 | 34..=36 | 42 | 47 | 60 | 65 => "Video processor exception",
        30 => "GPU semaphore access error",
        31 => "GPU memory page fault",
        33 | 59 => "Internal micro-controller error",
        37 | 38 => "Driver firmware error",
        44 => "Graphics Engine fault during context switch",
        // Cut short like this in dcgm-exporter's table.
        45 => {
            "Preemptive cleanup, due to previous errors -- Most likely to see when running multiple cuda"
        }
        48 => "Double Bit ECC Error",
        54 => "Auxiliary power is not connected to the GPU board",
        57 => "Error programming video memory interface",
        58 => "Unstable video memory interface detected",
        61 => "Internal micro-controller breakpoint/warning",
        62 => "Internal micro-controller halt",
        63 => "ECC page retirement or row remapping recording event",
        64 => "ECC page retirement or row remapper recording failure",
        66 | 67 => "Illegal access by driver",
        68 => "NVDEC0 Exception",
        69 => "Graphics Engine class error",
        70 => "CE3: Unknown Error",
        71 => "CE4: Unknown Error",
        72 => "CE5: Unknown Error",
        73 => "NVENC2 Error",
        74 => "NVLINK Error",
        75 => "CE6: Unknown Error",
        76 => "CE7: Unknown Error",
        77 => "CE8: Unknown Error",
        78 => "vGPU Start Error",
        79 => "GPU has fallen off the bus",
        80 => "Corrupted data sent to GPU",
        81 => "VGA Subsystem Error",
        82 => "NVJPG0 Error",
        83 => "NVDEC1 Error",
        84 => "NVDEC2 Error",
        85 => "CE9: Unknown Error",
        86 => "OFA Exception",
        87 | 90 | 91 | 108 | 126..=139 | 141 | 142 => "Reserved",
        88 => "NVDEC3 Error",
        89 => "NVDEC4 Error",
        92 => "High single-bit ECC error rate",
        93 => "Non-fatal violation of provisioned InfoROM wear limit",
        94 => "Contained ECC error",
        95 => "Uncontained ECC error",
        96 => "NVDEC5 Error",
        97 => "NVDEC6 Error",
        98 => "NVDEC7 Error",
        99 => "NVJPG1 Error",
        100 => "NVJPG2 Error",
        101 => "NVJPG3 Error",
        102 => "NVJPG4 Error",
        103 => "NVJPG5 Error",
        104 => "NVJPG6 Error",
        105 => "NVJPG7 Error",
        106 => "SMBPBI Test Message",
        107 => "SMBPBI Test Message Silent",
        // Two spaces, as dcgm-exporter writes it.
        109 => "Context Switch Timeout  Error",
        110 => "Security Fault Error",
        111 => "Display Bundle Error Event",
        112 => "Display Supervisor Error",
        113 => "DP Link Training Error",
        114 => "Display Pipeline Underflow Error",
        115 => "Display Core Channel Error",
        116 => "Display Window Channel Error",
        117 => "Display Cursor Channel Error",
        118 => "Display Pixel Pipeline Error",
        119 => "GSP RPC Timeout",
        120 => "GSP Error",
        121 => "C2C Link Error",
        122 => "SPI PMU RPC Read Failure",
        123 => "SPI PMU RPC Write Failure",
        124 => "SPI PMU RPC Erase Failure",
        125 => "Inforom FS Failure",
        140 => "Unrecovered ECC Error",
        143 => "GPU Initialization Failure",
        _ => "Unknown Error",
    }
}

#[cfg(test)]
mod tests {
    use super::description;

    #[test]
    fn common_xids_read_as_dcgm_exporter_writes_them() {
        assert_eq!(description(0), "No Error");
        assert_eq!(description(13), "Graphics Engine Exception");
        assert_eq!(description(31), "GPU memory page fault");
        assert_eq!(description(43), "GPU stopped processing");
        assert_eq!(description(48), "Double Bit ECC Error");
        assert_eq!(description(79), "GPU has fallen off the bus");
        assert_eq!(description(94), "Contained ECC error");
        assert_eq!(description(119), "GSP RPC Timeout");
        assert_eq!(description(130), "Reserved");
        assert_eq!(description(144), "Unknown Error");
        assert_eq!(description(u64::MAX), "Unknown Error");
    }
}
