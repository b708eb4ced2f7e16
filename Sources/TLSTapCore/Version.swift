/// tlstap's version, as `--version`, pcapng and HAR files report it.
public enum TLSTapVersion {
    public static let current = "0.1.0"
}
