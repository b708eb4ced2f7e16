// Java 17's HttpClient (JSSE: TLS written in Java) fetching one URL over
// HTTPS, trusting any certificate: a program whose TLS tlstap cannot probe.
//
//   java JavaClient.java URL [HOLDFILE]
//
// Makes three requests on one connection, printing each status and body
// length; with HOLDFILE, then waits until that file exists.
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class JavaClient {
    public static void main(String[] args) throws Exception {
        TrustManager[] trustAll = {
            new X509TrustManager() {
                public void checkClientTrusted(X509Certificate[] chain, String authType) {}
                public void checkServerTrusted(X509Certificate[] chain, String authType) {}
                public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
            }
        };
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trustAll, null);
        System.setProperty("jdk.internal.httpclient.disableHostnameVerification", "true");
        HttpClient client = HttpClient.newBuilder().sslContext(context).version(HttpClient.Version.HTTP_1_1).build();
        for (int i = 0; i < 3; i++) {
            HttpResponse<String> response = client.send(
                HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(response.statusCode() + " " + response.body().length());
        }
        while (args.length > 1 && !new java.io.File(args[1]).exists()) {
            Thread.sleep(50);
        }
    }
}
