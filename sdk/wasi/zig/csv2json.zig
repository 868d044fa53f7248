//! A kith function in Zig, built by Zig's own toolchain as a WASI command: CSV on
//! stdin (a header line, then rows; fields separated by the manifest's first argument,
//! a comma by default) becomes a JSON array of objects on stdout.
//!
//!     python3 -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall \
//!         -femit-bin=csv2json.wasm csv2json.zig
//!     printf 'name,qty\ntea,2\n' | kith call $(kith publish csv2json.wasm)
//!     [{"name":"tea","qty":"2"}]
//!
//! A row with more or fewer fields than the header is an error: a message on stderr
//! naming the row, and exit code 2.
const std = @import("std");

fn fail(comptime format: []const u8, args: anytype) noreturn {
    std.io.getStdErr().writer().print(format ++ "\n", args) catch {};
    std.process.exit(2);
}

pub fn main() !void {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const a = arena.allocator();

    const argv = try std.process.argsAlloc(a);
    const sep: u8 = if (argv.len > 1 and argv[1].len == 1) argv[1][0] else ',';

    const input = try std.io.getStdIn().readToEndAlloc(a, 16 << 20);
    var lines = std.mem.splitScalar(u8, input, '\n');
    const header = std.mem.trimRight(u8, lines.next() orelse "", "\r");
    if (header.len == 0) fail("the input has no header line", .{});
    var names = std.ArrayList([]const u8).init(a);
    var fields = std.mem.splitScalar(u8, header, sep);
    while (fields.next()) |f| try names.append(std.mem.trim(u8, f, " "));

    var out = std.io.bufferedWriter(std.io.getStdOut().writer());
    const w = out.writer();
    try w.writeByte('[');
    var row: usize = 1;
    var first = true;
    while (lines.next()) |raw| {
        row += 1;
        const line = std.mem.trimRight(u8, raw, "\r");
        if (line.len == 0) continue;
        var values = std.ArrayList([]const u8).init(a);
        var it = std.mem.splitScalar(u8, line, sep);
        while (it.next()) |v| try values.append(std.mem.trim(u8, v, " "));
        if (values.items.len != names.items.len)
            fail("row {d} has {d} fields, the header has {d}", .{ row, values.items.len, names.items.len });
        try w.writeAll(if (first) "{" else ",{");
        first = false;
        for (names.items, values.items, 0..) |name, value, i| {
            if (i > 0) try w.writeByte(',');
            try std.json.stringify(name, .{}, w);
            try w.writeByte(':');
            try std.json.stringify(value, .{}, w);
        }
        try w.writeByte('}');
    }
    try w.writeAll("]\n");
    try out.flush();
}
